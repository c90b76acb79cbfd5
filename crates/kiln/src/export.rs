//! `kiln export`: write a stored image out to another transport.

use std::path::PathBuf;

use kiln_engine::Engine;
use kiln_image::Store;
use kiln_recipe::BaseRef;

use crate::KilnError;
use crate::engine_images::load_into_engine;
use crate::reference;

/// Where an image is exported to, containers-transports(5) style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `oci:DIR[:REF]`.
    OciDir {
        /// The layout folder.
        dir: PathBuf,
        /// Ref name in its index.json.
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// Ref name in its index.json.
        reference: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// `NAME:TAG` to record.
        reference: Option<String>,
    },
    /// `docker-daemon:NAME:TAG`.
    DockerDaemon {
        /// `NAME:TAG`.
        reference: String,
    },
}

impl Destination {
    /// Whether writing there needs the container engine.
    pub fn needs_engine(&self) -> bool {
        matches!(self, Destination::DockerDaemon { .. })
    }
}

impl std::str::FromStr for Destination {
    type Err = KilnError;
    /// Destinations are spelled as bases are (containers-transports(5)), so
    /// they are parsed by the same code.
    fn from_str(s: &str) -> Result<Self, KilnError> {
        let invalid = |reason: String| KilnError::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        match s.parse::<BaseRef>().map_err(|e| invalid(e.to_string()))? {
            BaseRef::Oci { dir, reference } => Ok(Destination::OciDir { dir, reference }),
            BaseRef::OciArchive { file, reference } => {
                Ok(Destination::OciArchive { file, reference })
            }
            BaseRef::DockerArchive { file, reference } => {
                Ok(Destination::DockerArchive { file, reference })
            }
            BaseRef::DockerDaemon { reference } => Ok(Destination::DockerDaemon { reference }),
            BaseRef::Registry { .. } => Err(KilnError::Unsupported {
                recipe: PathBuf::from(s),
                feature: "exporting to a registry".into(),
                verb: "is",
                detail: Some("use oci:, oci-archive:, docker-archive: or docker-daemon:".into()),
            }),
            other => Err(invalid(format!(
                "{}: is not a place to export to: use oci:, oci-archive:, docker-archive: or docker-daemon:",
                other.transport()
            ))),
        }
    }
}

fn create(path: &PathBuf) -> Result<std::io::BufWriter<std::fs::File>, KilnError> {
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|source| KilnError::Io {
            path: path.clone(),
            source,
        })
}

/// Write the image `reference` names to `destination`. `engine` is needed
/// only for `docker-daemon:`.
pub async fn export(
    store: &Store,
    engine: Option<&dyn Engine>,
    reference: &str,
    destination: &Destination,
) -> Result<(), KilnError> {
    let image = reference::resolve(store, reference)?;
    let default_ref = || format!("{}:{}", image.name, &image.digest.hex()[..16]);
    match destination {
        Destination::OciDir { dir, reference } => {
            let r = reference.clone().unwrap_or_else(default_ref);
            kiln_image::write_oci_layout_dir(store, &image.digest, &r, dir)?;
        }
        Destination::OciArchive { file, reference } => {
            let r = reference.clone().unwrap_or_else(default_ref);
            kiln_image::write_oci_archive(store, &image.digest, &r, create(file)?)?;
        }
        Destination::DockerArchive { file, reference } => {
            let r = reference.clone().unwrap_or_else(default_ref);
            kiln_image::write_docker_loadable(store, &image.digest, &[r], create(file)?)?;
        }
        Destination::DockerDaemon { reference } => {
            let engine = engine.ok_or_else(|| KilnError::InvalidReference {
                reference: reference.clone(),
                reason: "docker-daemon: needs the container engine".into(),
            })?;
            load_into_engine(store, engine, &image.digest, reference.clone()).await?;
        }
    }
    Ok(())
}
