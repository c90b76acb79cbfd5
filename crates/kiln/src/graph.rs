//! Recipe graphs: `recipe:PATH` bases make recipes depend on each other.
//! [`plan`] (from files) and [`plan_recipes`] (from values) load every
//! recipe reachable from the ones asked for, each once, and order them in levels: every recipe comes after the ones it is
//! built on, and the recipes of one level are independent of each other (so
//! they may build side by side). A cycle is an error that shows its path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_recipe::{BaseRef, Recipe};

use crate::KilnError;
use crate::plan::recipe_dir;

/// Recipes in build order.
#[derive(Debug, Clone)]
pub struct BuildGraph {
    /// Every recipe, each once: the values given first, then the recipes
    /// their `recipe:` bases name, read from disk. A build builds and
    /// stores exactly these values, so an embedder may change one (a
    /// version, a label, a check) before building the graph.
    pub recipes: Vec<Recipe>,
    /// Indexes into `recipes`, level by level: a level only depends on
    /// earlier levels.
    pub levels: Vec<Vec<usize>>,
    /// For each recipe, the recipe its base names, if it is a `recipe:` base.
    pub base_of: Vec<Option<usize>>,
    /// For each recipe, the absolute, canonical recipe file it stands for:
    /// what a `recipe:` base that names it resolves to.
    pub files: Vec<PathBuf>,
}

/// The file a recipe path names: a folder means its `kiln.toml`. Made
/// absolute and canonical so that two spellings of one recipe are one node.
fn recipe_file(path: &Path) -> Result<PathBuf, KilnError> {
    let file = kiln_recipe::recipe_file(path);
    std::fs::canonicalize(&file).map_err(|source| KilnError::Io { path: file, source })
}

/// The node a recipe value stands for: its file, canonical when it exists
/// (or its folder does), else absolute. A recipe parsed from memory need
/// not have a file.
fn node_file(path: &Path) -> PathBuf {
    if let Ok(file) = std::fs::canonicalize(path) {
        return file;
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = folder.map_or_else(|| std::fs::canonicalize("."), std::fs::canonicalize);
    match (folder, path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
    }
}

/// Load `roots` and every recipe they are built on, and order them.
pub fn plan(roots: &[PathBuf]) -> Result<BuildGraph, KilnError> {
    plan_with_args(roots, &BTreeMap::new())
}

/// [`plan`] with build arguments (`--arg NAME=VALUE`) for the recipes of
/// `roots`, each of which must declare every one of them under `[args]`
/// ([`kiln_recipe::parse_with_args`]). A `recipe:` base read from disk is
/// built with its own `[args]` defaults: arguments are not passed down a
/// chain, so a base that many images share has one digest whichever image
/// asked for it.
pub fn plan_with_args(
    roots: &[PathBuf],
    args: &BTreeMap<String, String>,
) -> Result<BuildGraph, KilnError> {
    let mut recipes = Vec::with_capacity(roots.len());
    for root in roots {
        recipes.push(kiln_recipe::load_with_args(&recipe_file(root)?, args)?);
    }
    plan_recipes(recipes)
}

/// The nodes found so far, each once by recipe file.
#[derive(Default)]
struct Nodes {
    index: BTreeMap<PathBuf, usize>,
    recipes: Vec<Recipe>,
    files: Vec<PathBuf>,
    /// The recipe file each node's `recipe:` base names.
    edges: Vec<Option<PathBuf>>,
}

impl Nodes {
    /// Add `recipe` as the node for `file` unless it has one; queue the
    /// recipe its base names.
    fn add(
        &mut self,
        recipe: Recipe,
        file: PathBuf,
        pending: &mut Vec<PathBuf>,
    ) -> Result<(), KilnError> {
        if self.index.contains_key(&file) {
            return Ok(());
        }
        let base = match &recipe.image.base {
            BaseRef::Recipe { path } => {
                let dep = recipe_file(&recipe_dir(&recipe).join(path))?;
                pending.push(dep.clone());
                Some(dep)
            }
            _ => None,
        };
        self.index.insert(file.clone(), self.recipes.len());
        self.recipes.push(recipe);
        self.files.push(file);
        self.edges.push(base);
        Ok(())
    }
}

/// Order the recipe values `roots` and every recipe their `recipe:` bases
/// name (read from disk, unless one of `roots` is that recipe). The roots
/// are built as they are given, changed in memory or not.
pub fn plan_recipes(roots: Vec<Recipe>) -> Result<BuildGraph, KilnError> {
    let mut nodes = Nodes::default();
    let mut pending: Vec<PathBuf> = Vec::new();
    for recipe in roots {
        let file = node_file(&recipe.path);
        nodes.add(recipe, file, &mut pending)?;
    }
    while let Some(file) = pending.pop() {
        if !nodes.index.contains_key(&file) {
            nodes.add(kiln_recipe::load(&file)?, file, &mut pending)?;
        }
    }
    let Nodes {
        index,
        recipes,
        files,
        edges,
    } = nodes;
    let base_of: Vec<Option<usize>> = edges
        .iter()
        .map(|edge| edge.as_ref().and_then(|f| index.get(f).copied()))
        .collect();
    // Each recipe has at most one base, so the graph is a forest of chains
    // unless a chain loops back on itself.
    let mut level_of: Vec<Option<usize>> = vec![None; recipes.len()];
    for start in 0..recipes.len() {
        let mut chain = vec![start];
        let mut at = start;
        while let Some(next) = base_of[at] {
            if level_of[next].is_some() {
                break;
            }
            if let Some(pos) = chain.iter().position(|&n| n == next) {
                let mut cycle: Vec<PathBuf> = chain[pos..]
                    .iter()
                    .map(|&n| recipes[n].path.clone())
                    .collect();
                cycle.push(recipes[next].path.clone());
                return Err(KilnError::Cycle { path: cycle });
            }
            chain.push(next);
            at = next;
        }
        // Assign levels from the bottom of the chain up.
        for &n in chain.iter().rev() {
            if level_of[n].is_none() {
                let level = base_of[n].and_then(|b| level_of[b]).map_or(0, |l| l + 1);
                level_of[n] = Some(level);
            }
        }
    }
    let depth = level_of.iter().flatten().max().map_or(0, |m| m + 1);
    let mut levels = vec![Vec::new(); depth];
    for (n, level) in level_of.iter().enumerate() {
        if let Some(level) = level {
            levels[*level].push(n);
        }
    }
    Ok(BuildGraph {
        recipes,
        levels,
        base_of,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(dir: &Path, name: &str, base: &str) {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(
            folder.join("kiln.toml"),
            format!("[image]\nname = \"{name}\"\nbase = \"{base}\"\n\n[[layer]]\nname = \"d\"\ndirs = [{{ path = \"/d\" }}]\n"),
        )
        .expect("write");
    }

    fn names(graph: &BuildGraph) -> Vec<Vec<String>> {
        graph
            .levels
            .iter()
            .map(|level| {
                let mut names: Vec<String> = level
                    .iter()
                    .map(|&n| graph.recipes[n].image.name.to_string())
                    .collect();
                names.sort();
                names
            })
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_each_recipe_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        recipe(tmp.path(), "base", "scratch");
        recipe(tmp.path(), "mid", "recipe:../base");
        recipe(tmp.path(), "app", "recipe:../mid");
        recipe(tmp.path(), "tool", "recipe:../base/kiln.toml");
        recipe(tmp.path(), "solo", "scratch");
        let roots: Vec<PathBuf> = ["app", "tool", "solo", "base"]
            .iter()
            .map(|n| tmp.path().join(n))
            .collect();
        let graph = plan(&roots).expect("plan");
        assert_eq!(
            graph.recipes.len(),
            5,
            "base is loaded once however it is named"
        );
        assert_eq!(
            names(&graph),
            [vec!["base", "solo"], vec!["mid", "tool"], vec!["app"]]
        );
    }

    #[test]
    fn values_given_are_the_nodes_and_their_bases_come_from_disk() {
        let tmp = tempfile::tempdir().expect("tmp");
        recipe(tmp.path(), "base", "scratch");
        recipe(tmp.path(), "app", "recipe:../base");
        // `app` from disk, changed in memory; `tool` has a folder and no
        // recipe file.
        std::fs::create_dir_all(tmp.path().join("tool")).expect("mkdir");
        let mut app = kiln_recipe::load(&tmp.path().join("app/kiln.toml")).expect("load");
        app.image.version = Some("9.9.9".into());
        let tool = crate::parse_recipe(
            "[image]\nname = \"tool\"\nbase = \"recipe:../base\"\n",
            &tmp.path().join("tool"),
        )
        .expect("parse");
        let graph = plan_recipes(vec![app, tool]).expect("plan");
        assert_eq!(names(&graph), [vec!["base"], vec!["app", "tool"]]);
        assert_eq!(graph.recipes[0].image.version.as_deref(), Some("9.9.9"));
        assert_eq!(graph.base_of[0], Some(2));
        assert_eq!(graph.base_of[1], Some(2));
        let base_file = std::fs::canonicalize(tmp.path().join("base/kiln.toml")).expect("file");
        assert_eq!(graph.files[2], base_file);
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().expect("tmp");
        recipe(tmp.path(), "a", "recipe:../b");
        recipe(tmp.path(), "b", "recipe:../c");
        recipe(tmp.path(), "c", "recipe:../a");
        let err = plan(&[tmp.path().join("a")]).expect_err("cycle");
        let text = err.to_string();
        assert!(matches!(err, KilnError::Cycle { .. }), "{text}");
        for name in ["a/kiln.toml", "b/kiln.toml", "c/kiln.toml"] {
            assert!(text.contains(name), "{text}");
        }
        assert_eq!(err.kind(), crate::ErrorKind::Input);
    }

    #[test]
    fn a_missing_base_recipe_is_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        recipe(tmp.path(), "a", "recipe:../nowhere");
        let err = plan(&[tmp.path().join("a")]).expect_err("missing");
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
