//! The `ringfence` operator commands (clap derive): join tokens, the node inventory, policies on
//! the control plane, alerts, the audit log. The `ringfence` binary adds them beside its offline
//! commands (`policy check|explain`, `geo lookup`) and `completions`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Where the control plane is and how to authenticate.
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// The control plane's URL.
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_SERVER",
        default_value = "https://127.0.0.1:8443",
        value_name = "URL"
    )]
    pub server: String,
    /// The control plane's CA certificate (ca.pem in its state directory).
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_CA",
        default_value = "/var/lib/ringfence-control/ca.pem",
        value_name = "FILE"
    )]
    pub ca: PathBuf,
    /// The admin credential (admin.token in its state directory).
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_ADMIN_TOKEN_FILE",
        default_value = "/var/lib/ringfence-control/admin.token",
        value_name = "FILE"
    )]
    pub admin_token_file: PathBuf,
}

/// Operator commands other than `policy ...`.
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// One-time join tokens for enrolling nodes.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The node inventory (default: list).
    Nodes {
        #[command(subcommand)]
        command: Option<NodesCommand>,
        /// Print JSON (also after a subcommand: `nodes show ID --json`).
        #[arg(long, global = true)]
        json: bool,
    },
    /// Events delivered by agents, newest first.
    Alerts {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Console operator accounts (viewer, operator, admin).
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Stream verdicts, plaintext drops and alerts from the fleet (filters applied by the
    /// control plane).
    Observe(ObserveArgs),
    /// An auditor's evidence pack: export a period from the control plane, verify a pack offline.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
}

/// `ringfence observe`.
#[derive(Args, Clone, Debug, Default)]
pub struct ObserveArgs {
    /// Only this node (id or hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// Only nodes of this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Only workloads with these labels: k=v (comma-separated or repeated).
    #[arg(long, value_name = "K=V")]
    pub workload: Vec<String>,
    /// Only this verdict: deny (policy denials), dropped (every drop), allow, audit, alert, or an
    /// event kind (plaintext-drop, exfiltration).
    #[arg(long)]
    pub verdict: Option<String>,
    /// Only remote addresses in this CIDR (or this address), or in this country (two letters).
    #[arg(long, value_name = "CIDR|COUNTRY")]
    pub to: Option<String>,
    /// Keep streaming new flows as they arrive.
    #[arg(short, long)]
    pub follow: bool,
    /// Stored flows shown first (default 20 with -f, else 100).
    #[arg(long)]
    pub last: Option<u32>,
    /// Output: table, or json (one `{"flow": ...}` object per line).
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

/// `ringfence evidence ...`.
#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Export the signed evidence pack of a period as .tar.zst.
    Export {
        /// Start of the period: YYYY-MM-DD (UTC midnight) or RFC 3339.
        #[arg(long, value_name = "DATE")]
        from: String,
        /// End of the period (exclusive): YYYY-MM-DD (UTC midnight) or RFC 3339.
        #[arg(long, value_name = "DATE")]
        to: String,
        /// The pack to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Verify a pack offline: signature, every file's hash, nothing added or removed, the audit
    /// chain segment and its checkpoints. Exit 1 naming the first bad file.
    Verify {
        /// The pack (.tar.zst).
        pack: PathBuf,
        /// The evidence public key to pin (evidence-signing.pub in the control plane's state
        /// directory, obtained separately). Without it the key inside the pack is used, and the
        /// pack only proves it was not altered since it was signed by whoever holds that key.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The audit checkpoint public key to pin (audit-checkpoint.pub); default: the pack's.
        #[arg(long, value_name = "FILE")]
        checkpoint_key: Option<PathBuf>,
        /// The node CA to pin for the self-tests' node signatures (ca.pem in the control plane's
        /// state directory); default: the pack's keys/node-ca.pem.
        #[arg(long, value_name = "FILE")]
        node_ca: Option<PathBuf>,
    },
}

/// `ringfence accounts ...`.
#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Create an account; the password is read from --password-file or the first line of
    /// standard input (at least 12 characters; stored as an Argon2id hash).
    Add {
        /// Login name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// viewer (reads), operator (also applies and rolls back policies, acknowledges alerts)
        /// or admin (also manages accounts).
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// A file holding the password (else standard input).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an account (its console sessions end).
    Remove {
        /// Login name.
        name: String,
    },
}

/// `ringfence token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a join token (printed once).
    Create {
        /// Region of the node that enrolls with it.
        #[arg(long)]
        region: String,
        /// Labels of that node: k=v, comma-separated or repeated.
        #[arg(long, value_name = "K=V,...")]
        labels: Vec<String>,
        /// Validity, e.g. 1h, 30m.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ringfence nodes ...`.
#[derive(Subcommand, Debug)]
pub enum NodesCommand {
    /// List nodes.
    List,
    /// One node and the workloads its agent reported (cgroup, labels, governing policy).
    Show {
        /// The node id.
        id: String,
    },
    /// Revoke a node: its certificates are refused from now on.
    Revoke {
        /// The node id.
        id: String,
    },
    /// Pin a node's WireGuard tunnel addresses (instead of its pool address; audited).
    PinAddress {
        /// The node id.
        id: String,
        /// CIDRs, not overlapping another node's.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Rotate a node's WireGuard key (the only way to change a bound key; audited).
    RotateKey {
        /// The node id.
        id: String,
        /// The new public key (`ringfence-agent wg pubkey` on the node).
        #[arg(long)]
        public_key: String,
    },
}

/// `ringfence audit ...`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain here and report the first edited or deleted record (exit 1);
    /// with --checkpoint, also prove the tail: deleted newest records, a rehashed chain or a
    /// rolled-back database no longer match the newest signed checkpoint.
    Verify {
        /// Check an exported file instead of the server's log.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Where checkpoints are: a file of checkpoint lines (--checkpoint-file), an http(s)://
        /// URL, or s3://BUCKET/PREFIX (repeatable; the newest valid checkpoint is used).
        #[arg(long, value_name = "FILE|URL")]
        checkpoint: Vec<String>,
        /// The checkpoint public key (audit-checkpoint.pub in the control plane's state
        /// directory; copy it somewhere the database's writers cannot change).
        #[arg(
            long,
            env = "RINGFENCE_CHECKPOINT_KEY",
            default_value = "/var/lib/ringfence-control/audit-checkpoint.pub",
            value_name = "FILE"
        )]
        checkpoint_key: PathBuf,
        /// S3 endpoint for s3:// checkpoints (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
        #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
        s3_endpoint: Option<String>,
        /// S3 region for s3:// checkpoints.
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1", value_name = "REGION")]
        s3_region: String,
    },
    /// Write the log as JSON lines.
    Export {
        /// Write to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `ringfence policy ...` commands that talk to the control plane.
#[derive(Subcommand, Debug)]
pub enum PolicyOperatorCommand {
    /// Store a policy as a new version for the nodes a selector picks.
    Apply {
        /// The policy YAML file.
        file: PathBuf,
        /// Which nodes: region=R,k=v,... (default: all).
        #[arg(long, default_value = "", value_name = "SELECTOR")]
        selector: String,
        /// Who applies it (default: $USER).
        #[arg(long)]
        author: Option<String>,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
        /// Refuse (store nothing) when the selector matches no enrolled node.
        #[arg(long)]
        strict: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Line diff between two stored versions.
    Diff {
        /// Old version.
        from: u64,
        /// New version.
        to: u64,
    },
    /// Every stored version, newest first.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-apply an old version as a new version.
    Rollback {
        /// The version to re-apply.
        version: u64,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
