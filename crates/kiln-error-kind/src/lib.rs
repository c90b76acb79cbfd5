//! kiln-error-kind: the three kinds of failure, so that every kiln crate can
//! say of each error variant, where the variant is defined, which kind it
//! is.
//!
//! A command line maps the kinds to exit codes (1 failed work, 2 bad input,
//! 3 missing environment); an embedder decides whether to retry, ask the
//! user, or give up. Each crate's error type has a `kind()` method written
//! as an exhaustive `match` with no wildcard arm: a variant added later does
//! not compile until its author says which kind it is, so it can never fall
//! silently into "the work failed".
//!
//! ```
//! use kiln_error_kind::ErrorKind;
//!
//! assert_eq!(ErrorKind::Input.exit_code(), 2);
//! ```
#![deny(missing_docs)]

/// Which kind of failure an error is, and so which exit code it deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The work was tried and failed: a build step, a check, a refused
    /// promotion, a corrupt store (exit 1).
    Work,
    /// The input is wrong: a recipe, a reference, a flag, a source file
    /// that is not there (exit 2).
    Input,
    /// The environment lacks something: no container engine, no registry
    /// (exit 3).
    Environment,
}

impl ErrorKind {
    /// The exit code the command-line contract gives this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Work => 1,
            ErrorKind::Input => 2,
            ErrorKind::Environment => 3,
        }
    }
}

/// An error and every cause under it on one line, `what: why: root cause`.
///
/// kiln's error messages never repeat their cause (that is what
/// [`std::error::Error::source`] is for), so whoever shows an error to a
/// person shows the chain with this rather than the top message alone.
///
/// ```
/// use kiln_error_kind::Chain;
///
/// #[derive(Debug)]
/// struct Outer(std::io::Error);
/// impl std::fmt::Display for Outer {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("reading kiln.toml")
///     }
/// }
/// impl std::error::Error for Outer {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
/// let e = Outer(std::io::Error::other("permission denied"));
/// assert_eq!(Chain(&e).to_string(), "reading kiln.toml: permission denied");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}
