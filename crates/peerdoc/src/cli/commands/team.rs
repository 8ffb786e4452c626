//! `peerdoc team …`: create a team, invite and remove devices, names and roles.

use std::io::Write;

use super::super::args::{GlobalArgs, TeamCommand};
use super::super::error::CliError;
use super::super::output::{Table, age, now_ms, printable, utc, write_json};
use super::connect;
use crate::api::{CreateInvite, CreateTeam, InviteInfo, JoinTeam, TeamStatus, UpdateMember};

pub(super) fn run(
    global: &GlobalArgs,
    command: &TeamCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let client = connect(global)?;
    match command {
        TeamCommand::Status | TeamCommand::Members => {
            let team = client.team()?;
            if global.json {
                write_json(out, &team)?;
            } else {
                write_team(out, &team, now_ms())?;
            }
        }
        TeamCommand::Create { name, device_name } => {
            let team = client.create_team(&CreateTeam {
                name: name.clone(),
                device_name: device_name.clone(),
            })?;
            if global.json {
                write_json(out, &team)?;
            } else {
                writeln!(
                    out,
                    "created team {:?}; this device is its first admin.",
                    name
                )?;
                writeln!(
                    out,
                    "Invite a device with: peerdoc team invite --name \"Sam's tablet\""
                )?;
            }
        }
        TeamCommand::Join { code, name } => {
            let team = client.join_team(&JoinTeam {
                code: code.clone(),
                device_name: name.clone(),
            })?;
            // The next command (a read, a fetch) should find the team connected.
            let connected = wait_for_a_member(&client);
            if global.json {
                write_json(out, &team)?;
            } else {
                let me = team.me.as_ref();
                writeln!(
                    out,
                    "joined team {:?} as {:?} ({}).",
                    team.name.as_deref().unwrap_or("?"),
                    me.map_or("?", |m| m.name.as_str()),
                    me.map_or("?", |m| m.role.as_str()),
                )?;
                match connected {
                    Some(name) => writeln!(out, "connected to {}; syncing now.", printable(&name))?,
                    None => writeln!(
                        out,
                        "not connected to a member yet; `peerdoc status` says why."
                    )?,
                }
            }
        }
        TeamCommand::Invite {
            role,
            name,
            expires,
            uses,
            no_qr,
            code_only,
        } => {
            let invite = client.create_invite(&CreateInvite {
                role: Some(role.clone()),
                name: name.clone(),
                expires_in_secs: Some(parse_duration(expires)?),
                uses: Some(*uses),
            })?;
            if global.json {
                write_json(out, &invite)?;
            } else if *code_only {
                writeln!(out, "{}", invite.code.as_deref().unwrap_or_default())?;
            } else {
                write_invite(out, &invite, !*no_qr)?;
            }
        }
        TeamCommand::Invites => {
            let invites = client.invites()?;
            if global.json {
                write_json(out, &invites)?;
            } else if invites.is_empty() {
                writeln!(out, "no invites")?;
            } else {
                let mut table =
                    Table::new(&["ID", "ROLE", "NAME", "STATUS", "USES LEFT", "EXPIRES"]);
                for invite in &invites {
                    table.row(vec![
                        invite.id.clone(),
                        invite.role.clone(),
                        printable(invite.name.as_deref().unwrap_or("-")),
                        invite.status.clone(),
                        invite.uses_left.to_string(),
                        invite
                            .expires_ms
                            .map_or("never".to_owned(), |ms| utc(ms as i64)),
                    ]);
                }
                table.write(out, "")?;
            }
        }
        TeamCommand::Uninvite { id } => {
            client.revoke_invite(id)?;
            if !global.json {
                writeln!(out, "invite {id} withdrawn")?;
            }
        }
        TeamCommand::Rename { device, name } => {
            let team = client.update_member(
                device,
                &UpdateMember {
                    name: Some(name.clone()),
                    role: None,
                },
            )?;
            done(
                global,
                out,
                &team,
                &format!("{device} is now called {name:?}"),
            )?;
        }
        TeamCommand::Role { device, role } => {
            let team = client.update_member(
                device,
                &UpdateMember {
                    name: None,
                    role: Some(role.clone()),
                },
            )?;
            done(global, out, &team, &format!("{device} is now {role}"))?;
        }
        TeamCommand::Revoke { device } => {
            let team = client.revoke_member(device)?;
            done(
                global,
                out,
                &team,
                &format!(
                    "{device} was removed from the team: members refuse it from now on \
                     (it keeps its own copy of the documents)"
                ),
            )?;
        }
    }
    Ok(())
}

fn done(
    global: &GlobalArgs,
    out: &mut impl Write,
    team: &TeamStatus,
    message: &str,
) -> Result<(), CliError> {
    if global.json {
        write_json(out, team)?;
    } else {
        writeln!(out, "{}", printable(message))?;
    }
    Ok(())
}

/// `30m`, `24h`, `7d`, `90s` or plain seconds.
fn parse_duration(text: &str) -> Result<u64, CliError> {
    let text = text.trim();
    let bad = || CliError::BadDuration(text.to_owned());
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let number: u64 = number.trim().parse().map_err(|_| bad())?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    match number.checked_mul(scale) {
        Some(0) | None => Err(bad()),
        Some(secs) => Ok(secs),
    }
}

fn write_invite(out: &mut impl Write, invite: &InviteInfo, qr: bool) -> std::io::Result<()> {
    let code = invite.code.as_deref().unwrap_or("?");
    writeln!(
        out,
        "Invite code (read it aloud or type it on the new device):"
    )?;
    writeln!(out)?;
    writeln!(out, "    {code}")?;
    writeln!(out)?;
    writeln!(out, "On the new device: peerdoc team join {code}")?;
    let who = invite
        .name
        .as_deref()
        .map_or(String::new(), |n| format!(" as {}", printable(n)));
    let expires = invite.expires_ms.map_or("never expires".to_owned(), |ms| {
        format!("expires {}", utc(ms as i64))
    });
    writeln!(
        out,
        "Role {}{who}; {} use(s); {expires}; the new device dials {}.",
        invite.role,
        invite.uses_left,
        invite.addrs.join(", ")
    )?;
    if qr && let Ok(parsed) = peerdoc_team::InviteCode::parse(code) {
        writeln!(out)?;
        writeln!(out, "{}", parsed.qr_terminal().trim_end())?;
    }
    Ok(())
}

fn write_team(out: &mut impl Write, team: &TeamStatus, now: u64) -> std::io::Result<()> {
    writeln!(out, "{}", printable(&team.summary))?;
    if team.members.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(&["NAME", "ROLE", "STATE", "ADDED BY", "DEVICE"]);
    for member in &team.members {
        let state = match (&member.revoked, member.this_device, member.connected) {
            (Some(r), _, _) => format!("removed by {} {}", r.by, age(now, r.at_ms)),
            (None, true, _) => "this device".to_owned(),
            (None, false, true) => "connected".to_owned(),
            (None, false, false) => match member.last_seen_ms {
                Some(ms) => format!("last seen {}", age(now, ms)),
                None => "not connected".to_owned(),
            },
        };
        table.row(vec![
            printable(&member.name),
            member.role.clone(),
            printable(&state),
            printable(member.added_by.as_deref().unwrap_or("-")),
            member.device.clone(),
        ]);
    }
    table.write(out, "")
}

/// How long `team join` waits for its first connection to a member.
const JOIN_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Waits until this device is connected to a team member (the inviter, usually) and
/// returns its name, or `None` after [`JOIN_CONNECT_WAIT`].
fn wait_for_a_member(client: &crate::client::Client) -> Option<String> {
    let started = std::time::Instant::now();
    while started.elapsed() < JOIN_CONNECT_WAIT {
        if let Ok(peers) = client.peers()
            && let Some(peer) = peers.iter().find(|p| p.connected && p.sync_stream)
        {
            return Some(peer.name.clone().unwrap_or_else(|| peer.peer_id.clone()));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("7D").unwrap(), 604_800);
        for bad in ["", "h", "0h", "3w", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
