//! kiln-secrets keeps build secrets out of images and out of output.
//!
//! A recipe declares secrets (`[secrets.api_token] from = "env:API_TOKEN"`)
//! and run layers list the ones they may see. This crate does the three
//! things that make that safe:
//!
//! - [`read`] fetches a value from its `env:` or `file:` source when a build
//!   needs it, into a [`SecretValue`] that lives in memory only, is wiped
//!   when dropped and never shows its bytes through `Debug`. A missing
//!   source is [`SecretError::Unavailable`], naming the secret and source.
//! - [`Redactor`] replaces every form of every secret with `***` in a step's
//!   output before it is printed or stored.
//! - [`scan_image`] searches an assembled image (the layers the recipe made,
//!   the whole config, the history, the manifest annotations) for every
//!   secret before it is stored under a name; each hit is a [`Leak`] naming
//!   the secret, the layer and the path or field, never the value.
//!
//! "Every form" is [`needles`]: the raw value (also without a trailing
//! newline), base64 and URL-safe base64 (also embedded at any alignment in
//! longer base64 text), lowercase and uppercase hex, and percent-encoding.
//! Encoded forms shorter than [`MIN_ENCODED_LEN`] bytes are not looked for.
//!
//! **API boundary.** kiln-image never sees a secret value: this crate reads
//! images through kiln-image's store API, and the values stay here and in
//! the engine step that mounts them.
//!
//! ```
//! use kiln_secrets::{Redactor, SecretValue, needles};
//!
//! let token = SecretValue::new("api_token", "tok-0123456789");
//! assert_eq!(format!("{token:?}"), r#"SecretValue { name: "api_token", value: *** }"#);
//!
//! let redactor = Redactor::new(std::slice::from_ref(&token));
//! assert_eq!(redactor.redact("curl -H 'X-Token: tok-0123456789'"), "curl -H 'X-Token: ***'");
//! // base64 of the value, as `echo -n ... | base64` prints it:
//! assert_eq!(redactor.redact("dG9rLTAxMjM0NTY3ODk="), "***");
//! assert!(needles(&token).len() > 5);
//! ```
//!
//! The build, in outline:
//!
//! ```no_run
//! use std::path::Path;
//! use kiln_image::{Digest, Store};
//! use kiln_recipe::SecretSource;
//!
//! let source: SecretSource = "env:API_TOKEN".parse()?;
//! let token = kiln_secrets::read("api_token", &source, Path::new("images/web"))?;
//! let secrets = vec![token];
//! // ... run the steps, printing `Redactor::new(&secrets).redact(line)` ...
//! let store = Store::open("/var/lib/kiln")?;
//! // The manifest the build just assembled, e.g. from `kiln_image::assemble`:
//! let manifest: Digest = store.resolve("web:candidate")?.ok_or("not built")?.digest;
//! let base_layers = 1;
//! let leaks = kiln_secrets::scan_image(&store, &manifest, &secrets, base_layers)?;
//! for leak in &leaks {
//!     eprintln!("{leak}"); // secret api_token (base64) found in layer 2 (...) at /etc/motd
//! }
//! assert!(leaks.is_empty(), "the image must not be stored");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod leak;
mod needle;
mod redactor;
mod scan;
mod value;

pub use error::SecretError;
pub use kiln_error_kind::ErrorKind;
pub use leak::{Leak, LeakLocation};
pub use needle::{Encoding, MIN_ENCODED_LEN, Needle, needles};
pub use redactor::Redactor;
pub use scan::scan_image;
pub use value::{SecretValue, read};
