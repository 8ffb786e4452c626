//! The command line, as clap parses it. Every flag has an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// peerdoc: offline-first document sync for field teams.
#[derive(Debug, Parser)]
#[command(name = "peerdoc", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by the daemon and the client commands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Data directory (store, identity, API token and address).
    /// [default: the platform's data directory, e.g. ~/.local/share/peerdoc]
    #[arg(long, global = true, env = "PEERDOC_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// URL of the daemon's API (client commands). [default: read from <DATA_DIR>/api.addr]
    #[arg(long, global = true, env = "PEERDOC_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// API bearer token (client commands). [default: read from <DATA_DIR>/api.token]
    #[arg(
        long,
        global = true,
        env = "PEERDOC_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print machine-readable JSON instead of text (client commands).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (SIGINT/SIGTERM stop it gracefully).
    Run(RunArgs),
    /// Show the daemon's state: peers, documents, and what each peer is missing.
    Status,
    /// List connected and known peers with their health; add or remove a peer address.
    Peers {
        /// 'add ADDR' or 'remove ADDR' (without: list the peers).
        #[command(subcommand)]
        action: Option<PeersCommand>,
    },
    /// Work with documents.
    #[command(subcommand)]
    Doc(DocCommand),
    /// The team: create one, invite and remove devices, names and roles.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Open the dashboard in the default browser, signed in (a one-time link).
    Open {
        /// Print the link instead of starting a browser (it works once, for 2 minutes).
        #[arg(long)]
        print: bool,
    },
    /// Print this device's peer id and the full addresses another device can dial.
    Id,
    /// The daemon's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The document store on this device: encryption at rest, copying to and from
    /// PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script, e.g.
    /// 'peerdoc completions bash > ~/.local/share/bash-completion/completions/peerdoc'.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// 'peerdoc config …'.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration 'peerdoc run' would use with these flags, every key
    /// with its value and where it came from (default, profile, file, environment,
    /// flag). Reads the files and the environment; needs no running daemon.
    Show(RunArgs),
}

/// 'peerdoc store …'.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write a new random store key (64 hex digits, mode 0600) to PATH, for
    /// storage.encryption = "key_file". Keep it outside the data directory; without it
    /// the store cannot be opened.
    NewKey {
        /// Where to write the key (refused if the file exists).
        path: std::path::PathBuf,
    },
    /// Encrypt this device's existing store with the secret [storage] names (the daemon
    /// must be stopped). Set storage.encryption (and the key file or passphrase) first.
    Encrypt(Box<RunArgs>),
    /// Copy the documents into a PostgreSQL database (--to) or back from one (--from),
    /// with the daemon stopped.
    ///
    /// --to moves a cloud's documents from the data directory into the database, for
    /// 'peerdoc run --store'; --from brings them back into an empty data directory. The
    /// destination must be empty. The copy is read back and compared before it counts
    /// as done; a daemon refuses a store whose copy was interrupted, and running the
    /// same command again starts that copy over.
    Copy(Box<CopyArgs>),
}

/// 'peerdoc store copy'.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["to", "from"])))]
pub struct CopyArgs {
    /// Copy this data directory's store (encrypted or not) into this PostgreSQL
    /// database: a libpq connection string or postgres:// URL. With no value, the one
    /// PEERDOC_STORE names, which keeps a password out of 'ps'.
    #[arg(
        long,
        value_name = "POSTGRES_URL",
        num_args = 0..=1,
        default_missing_value = "",
        hide_default_value = true
    )]
    pub to: Option<String>,
    /// Copy this PostgreSQL database into this data directory's store, which must be
    /// empty or absent (it is created encrypted when storage.encryption is set). With
    /// no value, the database PEERDOC_STORE names.
    #[arg(
        long,
        value_name = "POSTGRES_URL",
        num_args = 0..=1,
        default_missing_value = "",
        hide_default_value = true
    )]
    pub from: Option<String>,
    /// The daemon's settings: the data directory's store is opened as 'peerdoc run'
    /// opens it (its [storage] encryption and secret).
    #[command(flatten)]
    pub run: RunArgs,
}

/// 'peerdoc peers add|remove'.
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// Keep dialing this address from now on (and at every start, in a team), e.g.
    /// /ip4/198.18.0.20/tcp/4100 or 198.18.0.20:4100: for networks where devices do
    /// not find each other by themselves.
    Add {
        /// The address.
        addr: String,
    },
    /// Stop dialing this address.
    Remove {
        /// The address.
        addr: String,
    },
}

/// 'peerdoc team …' ('docs/teams.md').
#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Show the team and its members (or what to do when this device has none).
    Status,
    /// Create a team on this device, which becomes its first admin.
    Create {
        /// The team's name, e.g. "Hill Barn crew".
        #[arg(long)]
        name: String,
        /// This device's name. [default: the host name]
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Join a team with the code an admin's 'peerdoc team invite' printed.
    Join {
        /// The invite code (dashes and case do not matter).
        code: String,
        /// This device's name. [default: the name in the invite, else the host name]
        #[arg(long)]
        name: Option<String>,
    },
    /// Invite a device: prints a code to read aloud or type, and its QR code.
    Invite {
        /// The role it gets: admin, editor or viewer.
        #[arg(long, default_value = "editor")]
        role: String,
        /// The name the new device gets, e.g. "Sam's tablet".
        #[arg(long)]
        name: Option<String>,
        /// How long the code works, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// How many devices may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Do not print the QR code.
        #[arg(long)]
        no_qr: bool,
        /// Print only the code (for scripts: CODE=$(peerdoc team invite --code-only)).
        #[arg(long)]
        code_only: bool,
    },
    /// List the invites this device made.
    Invites,
    /// Withdraw an invite (by the id 'team invites' shows).
    Uninvite {
        /// The invite's id.
        id: String,
    },
    /// List the members: names, roles, connected now or last seen.
    Members,
    /// Rename a device (an admin renames any; a device renames itself).
    Rename {
        /// The device: its name or peer id.
        device: String,
        /// Its new name.
        name: String,
    },
    /// Change a device's role (admins only).
    Role {
        /// The device: its name or peer id.
        device: String,
        /// admin, editor or viewer.
        role: String,
    },
    /// Remove a device from the team: every member refuses it from now on.
    Revoke {
        /// The device: its name or peer id.
        device: String,
    },
}

/// 'peerdoc run'. Precedence: flags > environment > config file > defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// TOML config file. [default: <config dir>/peerdoc/config.toml if it exists]
    #[arg(long, env = "PEERDOC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address the HTTP API binds to (port 0 picks one). [default: 127.0.0.1:7420]
    #[arg(long, env = "PEERDOC_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<String>,
    /// libp2p listen address (repeatable). [default: /ip4/0.0.0.0/tcp/0 and QUIC]
    #[arg(
        long = "listen",
        env = "PEERDOC_LISTEN",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub listen: Vec<String>,
    /// Peer to keep dialing (repeatable), e.g. /ip4/127.0.0.1/tcp/4001.
    #[arg(
        long = "peer",
        env = "PEERDOC_PEERS",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub peers: Vec<String>,
    /// Cloud endpoint to keep connected whenever a path exists (repeatable): a ws://
    /// URL of an automerge-repo sync server or a libp2p multiaddr.
    #[arg(
        long = "cloud",
        env = "PEERDOC_CLOUD",
        value_delimiter = ',',
        value_name = "URL|MULTIADDR"
    )]
    pub cloud: Vec<String>,
    /// Turn mDNS discovery off (use explicit --peer addresses only).
    #[arg(long, env = "PEERDOC_NO_MDNS")]
    pub no_mdns: bool,
    /// Defaults for where the daemon runs: 'device' (mDNS on) or 'cloud' (mDNS off,
    /// libp2p on TCP 4001, needs a team key or an allowlist). [default: device]
    #[arg(long, env = "PEERDOC_PROFILE", value_name = "PROFILE")]
    pub profile: Option<crate::config::Profile>,
    /// File holding the team key (64 hex characters); only devices with the same key connect.
    #[arg(long, env = "PEERDOC_TEAM_KEY_FILE", value_name = "FILE")]
    pub team_key_file: Option<PathBuf>,
    /// Sync with any peerdoc on the network, with no team (demos and tests only:
    /// anyone on the Wi-Fi gets every document). Without it, only team members connect.
    #[arg(long, env = "PEERDOC_OPEN")]
    pub open: bool,
    /// Be the team's meeting point on Wi-Fi that keeps devices apart: run it on a laptop
    /// every device can reach (on a cable, or serving its own hotspot).
    #[arg(long, env = "PEERDOC_HUB")]
    pub hub: bool,
    /// Log filter, e.g. 'info' or 'peerdoc=debug'. [default: info]
    #[arg(long, env = "PEERDOC_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Also write the log to this file, rotated at 10 MiB (5 old files kept).
    #[arg(long, env = "PEERDOC_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Set any config key, e.g. '--set node.max_docs_in_memory=500' (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Keep the documents in this PostgreSQL database instead of the data directory
    /// (the cloud tier): a libpq connection string or postgres:// URL. Give a password
    /// through PEERDOC_STORE rather than the flag, which other users see in 'ps'.
    #[arg(
        long,
        env = "PEERDOC_STORE",
        value_name = "POSTGRES_URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

/// 'peerdoc doc …'.
#[derive(Debug, Subcommand)]
pub enum DocCommand {
    /// Create a document from JSON (an argument, '-' for stdin, or '@file').
    New {
        /// The initial content, a JSON object. [default: {}]
        content: Option<String>,
        /// Its title.
        #[arg(long)]
        title: Option<String>,
        /// Its sync priority (higher syncs first).
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
    },
    /// List documents.
    List {
        /// Include deleted documents.
        #[arg(long)]
        deleted: bool,
        /// Include the daemon's own documents (team membership, shared titles).
        #[arg(long)]
        system: bool,
    },
    /// Print a document (or the value at a JSON pointer inside it) as JSON.
    Get {
        /// Document id or automerge: URL.
        id: String,
        /// JSON pointer inside the document, e.g. /guests/0/name.
        path: Option<String>,
        /// Read as of these heads (comma-separated hex).
        #[arg(long, value_delimiter = ',')]
        heads: Vec<String>,
    },
    /// Set the value at a JSON pointer (the value is JSON; a bare word is a string).
    Set {
        /// Document id or automerge: URL.
        id: String,
        /// JSON pointer, e.g. /title or /guests/- to append.
        path: String,
        /// The value, as JSON ('-' for stdin, '@file').
        value: String,
        /// Commit message.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Delete a document everywhere (a tombstone that syncs to every peer).
    Delete {
        /// Document id or automerge: URL.
        id: String,
    },
    /// Import an automerge file ('save()' bytes) as a new document.
    Import {
        /// The file ('-' for stdin).
        file: PathBuf,
        /// Its title.
        #[arg(long)]
        title: Option<String>,
        /// Its sync priority.
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
    },
    /// Show or change a document's title and sync priority. Both are shared: every
    /// device in the team sees them.
    Meta {
        /// Document id or automerge: URL.
        id: String,
        /// Its new title (an empty one clears it).
        #[arg(long)]
        title: Option<String>,
        /// Its new sync priority (higher syncs first).
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
    },
    /// Fetch a document this device does not have from the connected peers, by id
    /// (e.g. one created at the office on an automerge-repo sync server).
    Fetch {
        /// Document id or automerge: URL.
        id: String,
    },
    /// Export a document as automerge bytes.
    Export {
        /// Document id or automerge: URL.
        id: String,
        /// Output file. [default: stdout]
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Show a document's change history.
    History {
        /// Document id or automerge: URL.
        id: String,
    },
    /// Show a document's current conflicts and its conflict log.
    Conflicts {
        /// Document id or automerge: URL.
        id: String,
    },
    /// Settle a conflict: keep one of the values 'doc conflicts' lists (by its change
    /// hash, 6 characters are enough, or by its device's name), or write a new value.
    Resolve {
        /// Document id or automerge: URL.
        id: String,
        /// JSON pointer of the conflicted field, e.g. /florist/phone.
        path: String,
        /// The value to keep: its change hash (or a prefix) or its device's name.
        #[arg(long, conflicts_with = "value", required_unless_present = "value")]
        keep: Option<String>,
        /// Write this value instead (JSON; a bare word is a string).
        #[arg(long)]
        value: Option<String>,
    },
    /// Stream changes as they happen (all documents, or the ones named).
    Watch {
        /// Document ids to watch.
        ids: Vec<String>,
    },
}
