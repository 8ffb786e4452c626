//! "What is wrong", in words: why this device syncs with nobody (or with fewer devices
//! than it sees), from what discovery found and why connection attempts failed. Shown
//! by `/v1/status` (`network`), `peerdoc status` and the dashboard's banner.
//!
//! A pure function of its [`Inputs`], so every rule is tested without a network.

use std::time::Duration;

use serde::Serialize;

/// mDNS gets this long after start before "no device found" is said.
const DISCOVERY_GRACE: Duration = Duration::from_secs(10);

/// What the diagnosis looks at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inputs {
    /// Devices connected now (libp2p peers with a sync stream) and cloud endpoints.
    pub(crate) connected: usize,
    /// mDNS is on.
    pub(crate) mdns: bool,
    /// Peers mDNS lists now.
    pub(crate) discovered: usize,
    /// Addresses dialed explicitly (configured, added, the team members').
    pub(crate) explicit: usize,
    /// How long the network has run.
    pub(crate) running_for: Duration,
    /// Why each device seen but not connected is not (`failure_in_words`).
    pub(crate) failures: Vec<String>,
    /// This device is in no team yet (team mode): the team status says what to do.
    pub(crate) no_team: bool,
    /// Members not reachable from here that sync through a hub: (member, hub) names.
    pub(crate) through_hub: Vec<(String, String)>,
}

/// One thing a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    /// Stable, for scripts and tests.
    pub(crate) code: &'static str,
    /// What is wrong and what to do, in words.
    pub(crate) message: String,
}

fn problem(code: &'static str, message: &str) -> Problem {
    Problem {
        code,
        message: message.to_owned(),
    }
}

/// Everything wrong with this device's connections, most useful first.
pub(crate) fn diagnose(inputs: &Inputs) -> Vec<Problem> {
    if inputs.no_team {
        return Vec::new();
    }
    let any = |prefix: &str| inputs.failures.iter().any(|f| f.starts_with(prefix));
    let mut problems = Vec::new();
    if any("the device answered, but not with this team's key") {
        problems.push(problem(
            "another_team_key",
            "a device answered with another team key: it is in another team, or missed a key \
             change while away for long; if it belongs to this team, invite it again",
        ));
    }
    if let Some((_, hub)) = inputs.through_hub.first() {
        let names: Vec<&str> = inputs.through_hub.iter().map(|(m, _)| m.as_str()).collect();
        problems.push(Problem {
            code: "through_hub",
            message: format!(
                "not reachable from here, syncing through the hub {hub}: {} (this Wi-Fi keeps \
                 devices apart)",
                names.join(", ")
            ),
        });
    }
    if inputs.connected > 0 {
        return problems;
    }
    if any("no answer") {
        problems.push(problem(
            "unreachable",
            "other devices are visible but do not answer: this Wi-Fi may keep devices apart \
             (client isolation); use a phone hotspot, or a laptop on a cable that every device \
             can reach",
        ));
    } else if any("nothing answers at its address") {
        problems.push(problem(
            "addresses_dead",
            "nothing answers at the known addresses: the other devices are off, on another \
             network, or restarted on another port",
        ));
    } else if inputs.mdns
        && inputs.discovered == 0
        && inputs.explicit == 0
        && inputs.failures.is_empty()
        && inputs.running_for >= DISCOVERY_GRACE
    {
        problems.push(problem(
            "nothing_found",
            "no device found: this Wi-Fi may block multicast (mDNS); join with an invite code, \
             or add a device's address with `peerdoc peers add ADDRESS`",
        ));
    } else if !inputs.mdns && inputs.explicit == 0 {
        problems.push(problem(
            "no_discovery",
            "mDNS is off and no device address is known: join with an invite code, or add a \
             device's address with `peerdoc peers add ADDRESS`",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(inputs: &Inputs) -> Vec<&'static str> {
        diagnose(inputs).into_iter().map(|p| p.code).collect()
    }

    fn alone() -> Inputs {
        Inputs {
            mdns: true,
            running_for: DISCOVERY_GRACE,
            ..Inputs::default()
        }
    }

    #[test]
    fn nobody_found_after_the_grace_means_multicast_may_be_blocked() {
        assert_eq!(codes(&alone()), ["nothing_found"]);
        let early = Inputs {
            running_for: Duration::from_secs(2),
            ..alone()
        };
        assert!(codes(&early).is_empty());
        let found = Inputs {
            discovered: 1,
            ..alone()
        };
        assert!(codes(&found).is_empty());
    }

    #[test]
    fn timeouts_mean_isolation_and_refusals_mean_dead_addresses() {
        let isolated = Inputs {
            discovered: 3,
            failures: vec!["no answer (the device is out of range…): timed out".into()],
            ..alone()
        };
        assert_eq!(codes(&isolated), ["unreachable"]);
        let refused = Inputs {
            explicit: 1,
            failures: vec!["nothing answers at its address (…): refused".into()],
            ..alone()
        };
        assert_eq!(codes(&refused), ["addresses_dead"]);
    }

    #[test]
    fn another_key_is_said_even_when_others_are_connected() {
        let inputs = Inputs {
            connected: 2,
            failures: vec!["the device answered, but not with this team's key (…): x".into()],
            ..alone()
        };
        assert_eq!(codes(&inputs), ["another_team_key"]);
        let connected = Inputs {
            connected: 1,
            ..alone()
        };
        assert!(codes(&connected).is_empty());
    }

    #[test]
    fn members_behind_a_hub_are_named() {
        let inputs = Inputs {
            connected: 1,
            through_hub: vec![
                ("Sam's tablet".into(), "Office laptop".into()),
                ("Florist phone".into(), "Office laptop".into()),
            ],
            ..alone()
        };
        let problems = diagnose(&inputs);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, "through_hub");
        assert!(
            problems[0]
                .message
                .starts_with("not reachable from here, syncing through the hub Office laptop: Sam's tablet, Florist phone"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn mdns_off_with_no_address_and_no_team_yet() {
        let off = Inputs {
            mdns: false,
            ..alone()
        };
        assert_eq!(codes(&off), ["no_discovery"]);
        let with_peer = Inputs {
            explicit: 1,
            ..off.clone()
        };
        assert!(codes(&with_peer).is_empty());
        let no_team = Inputs {
            no_team: true,
            ..off
        };
        assert!(codes(&no_team).is_empty());
    }
}
