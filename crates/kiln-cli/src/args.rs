//! The command line's flags and commands (clap). Nothing here runs anything.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// kiln builds golden images from recipes, boots and checks them in a real
/// container engine, and promotes only the digests that passed.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// kiln's store [default: $KILN_STORE, else $XDG_DATA_HOME/kiln, else
    /// ~/.local/share/kiln].
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print one JSON document on stdout and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Flags of the commands that build.
#[derive(Debug, Clone, Args)]
pub struct BuildFlags {
    /// Build every layer of the recipe anew (the base is taken as it is).
    #[arg(long)]
    pub no_cache: bool,
    /// Say, for each layer, whether it came from the cache and, if not, why.
    #[arg(long)]
    pub explain: bool,
    /// How many images to build at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Another tag to give the built images (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Take layers this store misses from a registry's shared cache, each
    /// verified (repeatable; the first that has a layer wins).
    #[arg(long = "cache-from", value_name = "docker://HOST/REPO")]
    pub cache_from: Vec<String>,
    /// Publish every built layer's cache entry and blob to a registry, for
    /// other machines' --cache-from.
    #[arg(long = "cache-to", value_name = "docker://HOST/REPO")]
    pub cache_to: Option<String>,
    /// Build every run layer twice from the same parent and name the files
    /// that differ (exit 1 when one does).
    #[arg(long)]
    pub check_reproducible: bool,
    #[command(flatten)]
    pub args: BuildArgs,
}

/// `--arg NAME=VALUE`, on every command that builds.
#[derive(Debug, Clone, Default, Args)]
pub struct BuildArgs {
    /// A build argument: overrides the default of NAME under the recipe's
    /// [args] (repeatable; the last value of a name wins).
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = name_value)]
    pub args: Vec<(String, String)>,
}

impl BuildArgs {
    /// The arguments by name.
    pub fn map(&self) -> std::collections::BTreeMap<String, String> {
        self.args.iter().cloned().collect()
    }
}

/// `NAME=VALUE`; the value may be empty and may hold `=`.
fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "{s:?} is not NAME=VALUE: write --arg RELEASE=1.5.0"
        )),
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate recipes; build nothing.
    Check {
        /// Recipe files, or folders holding kiln.toml.
        #[arg(required = true, value_name = "RECIPE")]
        recipes: Vec<PathBuf>,
        /// Build arguments, as build will be given them: the same values
        /// give the same errors.
        #[command(flatten)]
        args: BuildArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Build images into the store; prints each image's name and digest.
    Build {
        /// Recipe files, or folders holding kiln.toml.
        #[arg(required = true, value_name = "RECIPE")]
        recipes: Vec<PathBuf>,
        #[command(flatten)]
        build: BuildFlags,
        #[command(flatten)]
        common: Common,
    },
    /// Boot an image in the container engine and run its checks.
    Test {
        /// A recipe (built first), or an image in the store: NAME, NAME:TAG,
        /// NAME:CHANNEL or NAME@sha256:HEX.
        #[arg(value_name = "RECIPE-or-IMAGE")]
        target: String,
        /// Also write the results as a JUnit XML file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Build arguments, for a recipe (not an image of the store).
        #[command(flatten)]
        args: BuildArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Move a channel to a digest that passed its checks.
    Promote {
        /// NAME@sha256:HEX.
        #[arg(value_name = "NAME@DIGEST")]
        image: String,
        /// The channel to move.
        #[arg(long, value_name = "C")]
        channel: String,
        #[command(flatten)]
        common: Common,
    },
    /// Build, test, then promote to the recipe's channels.
    Release {
        /// Recipe files, or folders holding kiln.toml.
        #[arg(required = true, value_name = "RECIPE")]
        recipes: Vec<PathBuf>,
        /// Also write the check results as a JUnit XML file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[command(flatten)]
        build: BuildFlags,
        #[command(flatten)]
        common: Common,
    },
    /// Move a channel back to the previous digest that passed.
    Rollback {
        /// The image name.
        name: String,
        /// The channel to move.
        #[arg(long, value_name = "C")]
        channel: String,
        #[command(flatten)]
        common: Common,
    },
    /// List what the store holds.
    Images {
        #[command(flatten)]
        common: Common,
    },
    /// Show the manifest, config, layers and history of an image, from the
    /// store or a registry.
    Inspect {
        /// NAME, NAME:TAG, NAME:CHANNEL or NAME@sha256:HEX, or
        /// docker://HOST/REPO[:TAG|@sha256:HEX].
        reference: String,
        /// For a registry reference naming a multi-platform index: the
        /// entry to show, OS/ARCH[/VARIANT] (default: this machine's).
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<kiln::recipe::Platform>,
        #[command(flatten)]
        common: Common,
    },
    /// Write an image out: oci:DIR, oci-archive:FILE, docker-archive:FILE,
    /// docker-daemon:NAME:TAG, docker://HOST/REPO[:TAG]. Its signatures and
    /// attestations go with it to oci:, oci-archive: and docker://.
    Export {
        /// NAME, NAME:TAG, NAME:CHANNEL or NAME@sha256:HEX.
        reference: String,
        /// Where to.
        destination: String,
        /// Leave the image's signatures and attestations (sha256-HEX.sig,
        /// .att) behind.
        #[arg(long)]
        no_signatures: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Write a key pair in cosign's formats: P.key (encrypted with
    /// COSIGN_PASSWORD, empty allowed) and P.pub.
    Keygen {
        /// Prefix of the two files written.
        #[arg(long, value_name = "P", default_value = "cosign")]
        output_key_prefix: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Sign an image's digest as cosign does (sha256-HEX.sig), in the store
    /// or in a registry.
    Sign {
        /// NAME, NAME:TAG, NAME:CHANNEL, NAME@sha256:HEX, or
        /// docker://HOST/REPO@sha256:HEX.
        reference: String,
        /// The private key (cosign's format); its password is COSIGN_PASSWORD.
        #[arg(long, value_name = "K")]
        key: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Verify an image's signatures, or its attestations of a type; exit 1
    /// when none verifies.
    Verify {
        /// NAME, NAME:TAG, NAME:CHANNEL, NAME@sha256:HEX, or
        /// docker://HOST/REPO@sha256:HEX.
        reference: String,
        /// The public key (PEM).
        #[arg(long, value_name = "PUB")]
        key: PathBuf,
        /// Verify attestations of this type instead: slsaprovenance1 or
        /// spdxjson.
        #[arg(long, value_name = "TYPE")]
        attestation: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the recipe's JSON Schema (for editors: taplo, Even Better
    /// TOML).
    Schema {
        #[command(flatten)]
        common: Common,
    },
    /// Print the image's SPDX 2.3 JSON SBOM.
    Sbom {
        /// NAME, NAME:TAG, NAME:CHANNEL or NAME@sha256:HEX.
        reference: String,
        #[command(flatten)]
        common: Common,
    },
    /// Remove what nothing references any more; waits for builds, tests
    /// and promotions in progress.
    Gc {
        /// Keep only the newest N images of each name that no channel ever
        /// pointed at (older ones lose their tags and test records).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Verify every blob, index entry, cache entry, test record, stored
    /// recipe, signature tag and channel; exit 1 when something is wrong.
    Fsck {
        /// Remove what is broken and unreferenced and point channel refs
        /// back at their history; never removes what is referenced and
        /// whole. Waits for builds, tests and promotions in progress.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        common: Common,
    },
}

impl Command {
    /// The flags every command takes.
    pub fn common(&self) -> &Common {
        match self {
            Command::Check { common, .. }
            | Command::Build { common, .. }
            | Command::Test { common, .. }
            | Command::Promote { common, .. }
            | Command::Release { common, .. }
            | Command::Rollback { common, .. }
            | Command::Images { common }
            | Command::Gc { common, .. }
            | Command::Fsck { common, .. }
            | Command::Inspect { common, .. }
            | Command::Export { common, .. }
            | Command::Keygen { common, .. }
            | Command::Sign { common, .. }
            | Command::Verify { common, .. }
            | Command::Sbom { common, .. }
            | Command::Schema { common } => common,
        }
    }
}

/// The store folder: `--store`, else `$KILN_STORE`, else
/// `$XDG_DATA_HOME/kiln`, else `~/.local/share/kiln`.
pub fn store_dir(flag: Option<&PathBuf>) -> PathBuf {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(dir) = flag {
        dir.clone()
    } else if let Some(dir) = non_empty("KILN_STORE") {
        dir.into()
    } else if let Some(dir) = non_empty("XDG_DATA_HOME") {
        PathBuf::from(dir).join("kiln")
    } else {
        PathBuf::from(non_empty("HOME").unwrap_or_else(|| ".".into())).join(".local/share/kiln")
    }
}
