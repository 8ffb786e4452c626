//! Errors of this crate.
//!
//! [`TeamError`] is the crate's error; [`InviteCodeError`] and [`EnrolError`] are the
//! errors of the two decoders of untrusted input (a typed invite code, an enrolment frame),
//! kept separate so the daemon can show a person exactly what went wrong.

use libp2p_identity::PeerId;

/// Everything that can go wrong when building, signing or checking team state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TeamError {
    /// The acting device is not an admin of the team.
    #[error("device {device} is not an admin of this team")]
    NotAdmin {
        /// The device that tried to act.
        device: PeerId,
    },
    /// The device is not a member of the team.
    #[error("device {0} is not a member of this team")]
    UnknownDevice(PeerId),
    /// The device was removed from the team; removal is final.
    #[error("device {0} was removed from this team")]
    Revoked(PeerId),
    /// The op would leave the team without any admin.
    #[error("this would leave the team without an admin: make another device admin first")]
    LastAdmin,
    /// A team or device name is empty, too long or contains control characters.
    #[error("invalid name: {0}")]
    BadName(&'static str),
    /// A signed op's body exceeds the size bound.
    #[error("membership op is {0} bytes, more than the limit")]
    OpTooLarge(usize),
    /// A signed op's signature does not match its signer.
    #[error("membership op has an invalid signature")]
    BadSignature,
    /// The signer's key is not an Ed25519 key (its public key cannot be recovered from its id).
    #[error("only Ed25519 device keys are supported")]
    UnsupportedKey,
    /// Signing failed inside the key implementation.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A signed op's body is not a valid op.
    #[error("malformed membership op: {0}")]
    MalformedOp(String),
    /// The op belongs to another team, or a genesis was used where it is not allowed.
    #[error("membership op does not belong to this team")]
    WrongTeam,
    /// A genesis op can only be produced by [`Membership::create`](crate::Membership::create).
    #[error("a team has exactly one genesis; it cannot be signed again")]
    GenesisNotAllowed,
    /// The op set holds no genesis for this team.
    #[error("the team's founding op is missing")]
    MissingGenesis,
    /// The Lamport clock cannot advance any further.
    #[error("the team's op counter is exhausted")]
    LamportOverflow,
    /// Too many ops to hold or send.
    #[error("too many membership ops (limit {0})")]
    TooManyOps(usize),
    /// No member matches a name or device id.
    #[error("no member named or with id '{0}'")]
    NoSuchMember(String),
    /// Several members share a name; the message lists them so the user can pick an id.
    #[error("'{query}' matches several members, use a device id: {}", matches.join(", "))]
    AmbiguousName {
        /// What the user typed.
        query: String,
        /// `name (device id)` of every match.
        matches: Vec<String>,
    },
    /// A role name is not one of the known roles.
    #[error("unknown role '{0}': use admin, editor or viewer")]
    UnknownRole(String),
    /// A team id is not 32 hex digits.
    #[error("invalid team id '{0}': expected 32 hex digits")]
    BadTeamId(String),
    /// An invite tag is not 16 hex digits.
    #[error("invalid invite tag '{0}': expected 16 hex digits")]
    BadInviteTag(String),
    /// An invite's number of uses is out of range.
    #[error("an invite can be used between 1 and {max} times, not {uses}")]
    BadInviteUses {
        /// The requested uses.
        uses: u32,
        /// The maximum.
        max: u32,
    },
    /// Too many outstanding invites.
    #[error("too many active invites: revoke some first")]
    TooManyInvites,
    /// No invite with this tag.
    #[error("no invite with tag {0}")]
    UnknownInvite(String),
    /// After joining, this device is not a member with the welcomed role.
    #[error("the welcome does not make this device a member with the promised role")]
    NotWelcomed,
    /// An invite code is malformed.
    #[error(transparent)]
    InviteCode(#[from] InviteCodeError),
    /// An enrolment frame is malformed.
    #[error(transparent)]
    Enrol(#[from] EnrolError),
    /// A sealed transport key does not open: altered, malformed, or sealed to another device,
    /// team or epoch.
    #[error("a sealed team key could not be opened: altered, or not meant for this device")]
    SealedKeyInvalid,
    /// A key rotation names the wrong epoch: each rotation moves to the next one.
    #[error("key rotation to epoch {found}, but the next epoch is {expected}")]
    WrongKeyEpoch {
        /// The next epoch.
        expected: u64,
        /// The rotation's epoch.
        found: u64,
    },
    /// A key rotation does not seal the new key to its own signer.
    #[error("a key rotation must seal the new key to the admin that makes it")]
    SignerNotRecipient,
    /// A key rotation seals the key to more devices than a team can have.
    #[error("a key rotation is sealed to {count} devices, more than the {max} a team can have")]
    TooManyRecipients {
        /// Devices the key is sealed to.
        count: usize,
        /// [`MAX_MEMBERS`](crate::MAX_MEMBERS).
        max: usize,
    },
    /// The team already has as many current members as allowed.
    #[error("the team already has {0} members, the most it can have: remove one first")]
    TeamFull(usize),
    /// A saved team state is inconsistent.
    #[error("inconsistent team state: {0}")]
    InconsistentState(&'static str),
}

/// Why a typed or scanned invite code was not accepted. Display texts speak to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteCodeError {
    /// The checksum does not match: a character was mistyped.
    #[error("the code has a typo: check it and type it again")]
    Checksum,
    /// The code is too short (characters are missing) or has a stray character at the end.
    #[error("the code is incomplete: some characters are missing, check it and type it again")]
    Truncated,
    /// The code was made by a newer peerdoc.
    #[error("the code was made by a newer version of peerdoc: update peerdoc and try again")]
    Version,
    /// The code lists more enrolment addresses than allowed.
    #[error("the code lists too many addresses: ask for a new code")]
    TooManyAddresses,
    /// The code holds a character that is not part of any code.
    #[error("the code cannot contain '{0}': check it and type it again")]
    BadCharacter(char),
    /// The checksum matched but the content is not a valid code.
    #[error("the code is not a valid invite code: ask for a new one")]
    Malformed,
}

/// Why an enrolment frame could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// The frame is larger than [`MAX_FRAME`](crate::MAX_FRAME).
    #[error("enrolment message too large")]
    FrameTooLarge,
    /// The frame is too short to hold its header.
    #[error("enrolment message truncated")]
    Truncated,
    /// Decryption failed: wrong invite secret, or the frame was altered.
    #[error("enrolment message could not be authenticated: wrong code or altered message")]
    Unauthenticated,
    /// The decrypted content is not the expected message.
    #[error("enrolment message is malformed")]
    Malformed,
    /// The frame's marker byte is unknown.
    #[error("unknown enrolment message kind")]
    UnknownKind,
    /// The welcome carries more ops than allowed.
    #[error("welcome carries too many ops")]
    TooManyOps,
}
