//! A recipe that never was a file: parsed from a string with the folder its
//! sources are read from, changed in memory, built, inspected as oci-spec
//! types and tested. What is stored (and what `kiln test REF` runs later)
//! is this value.
//!
//! ```text
//! cargo run -p kiln --example in_memory -- images/hello /tmp/kiln-store
//! ```
//!
//! The context must hold `rootfs/busybox` (Debian's busybox-static; `cargo
//! xtask demo` stages it into images/hello) and `site/`. Exits non-zero when
//! the stored image is not what the value said, so CI runs it as a test.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln::{BuildOptions, Docker, NoEvents, Store, TestOptions};

const RECIPE: &str = r#"
[image]
name = "in-memory"
version = "0.1.0"
epoch = 1700000000

[config]
entrypoint = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
user = "1000:1000"
expose = [8080]

[[layer]]
name = "busybox"
files = [{ src = "rootfs/busybox", dest = "/bin/busybox", mode = 0o755 }]

[[layer]]
name = "site"
owner = "1000:1000"
files = [{ src = "site/", dest = "/www/" }]

[[check]]
name = "health endpoint"
http = { port = 8080, path = "/health" }
interval = "200ms"
"#;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let context = args
        .next()
        .map_or_else(|| "images/hello".into(), PathBuf::from);
    let store = args.next().map_or_else(
        || std::env::temp_dir().join("kiln-in-memory-example"),
        PathBuf::from,
    );
    match run(context, store).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(context: PathBuf, store: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let mut recipe = kiln::parse_recipe(RECIPE, &context)?;
    // Changed in memory: this is what gets built, stored and tested.
    recipe.image.version = Some("0.1.1-in-memory".into());
    recipe.config.labels.insert(
        "org.opencontainers.image.description".into(),
        "made in memory".into(),
    );
    recipe.checks.push(kiln::recipe::Check {
        name: "runs as the web user".into(),
        kind: kiln::recipe::CheckKind::Metadata(kiln::recipe::MetadataCheck {
            user: Some("1000:1000".into()),
            ..Default::default()
        }),
    });

    let store = Store::open(&store)?;
    // File layers only: no engine needed to build.
    assert!(!kiln::needs_engine(&recipe));
    let built = kiln::build(&store, &recipe, &BuildOptions::default(), None, &NoEvents).await?;
    println!(
        "built {}:{} {}",
        built.name,
        built.tags.join(","),
        built.digest
    );

    let inspection = kiln::inspect(&store, "in-memory:0.1.1-in-memory")?;
    let version = inspection
        .manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.version").cloned());
    let description = inspection
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get("org.opencontainers.image.description").cloned());
    println!("manifest version {version:?}, config description {description:?}");
    if version.as_deref() != Some("0.1.1-in-memory")
        || description.as_deref() != Some("made in memory")
    {
        return Err("the stored image is not the recipe value that was built".into());
    }

    let docker = Docker::connect().await?;
    let tested = kiln::test(
        &store,
        &docker,
        &recipe,
        &built.digest,
        &TestOptions::default(),
        &NoEvents,
    )
    .await?;
    for check in &tested.checks {
        println!(
            "  {} {}",
            if check.passed { "pass" } else { "FAIL" },
            check.name
        );
    }
    if !tested.passed || tested.checks.len() != 2 {
        return Err(format!("expected both checks to pass: {:?}", tested.checks).into());
    }
    Ok(())
}
