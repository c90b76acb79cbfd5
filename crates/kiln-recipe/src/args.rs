//! Build arguments: `[args]` declares each with a default, `--arg` (the
//! caller's map) overrides it, and `${NAME}` in any string value of the
//! recipe is replaced by its value before any section is read, so every
//! check a value gets (a version is a tag, a base parses...) sees the value
//! that is built. A use of an unknown argument, an unterminated `${` and an
//! override the recipe does not declare are located problems.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::document::{Problems, type_name};

/// The key of the build arguments' table.
pub(crate) const ARGS_KEY: &str = "args";

/// What scanning one string for `${NAME}` finds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'s> {
    /// Text kept as it is (with `$${` already turned into `${`).
    Text(Cow<'s, str>),
    /// `${NAME}` at this byte offset of the string.
    Use { name: &'s str, at: usize },
    /// `${` with no closing `}`, at this byte offset.
    Unterminated { at: usize },
}

/// Splits `s` into text and uses of arguments. `$${` is a literal `${`.
fn scan(s: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"$${") {
            text.push_str(&s[rest..i]);
            text.push_str("${");
            i += 3;
            rest = i;
        } else if bytes[i..].starts_with(b"${") {
            text.push_str(&s[rest..i]);
            if !text.is_empty() {
                pieces.push(Piece::Text(Cow::Owned(std::mem::take(&mut text))));
            }
            match s[i + 2..].find('}') {
                Some(len) => {
                    pieces.push(Piece::Use {
                        name: &s[i + 2..i + 2 + len],
                        at: i,
                    });
                    i += 2 + len + 1;
                    rest = i;
                }
                None => {
                    pieces.push(Piece::Unterminated { at: i });
                    rest = bytes.len();
                    i = bytes.len();
                }
            }
        } else {
            i += 1;
        }
    }
    text.push_str(&s[rest..]);
    if !text.is_empty() {
        pieces.push(Piece::Text(Cow::Owned(text)));
    }
    pieces
}

/// Byte offsets in `text` of the uses and unterminated `${` that `scan`
/// finds in the raw text of a string value (quotes and escapes included).
/// When the raw text holds as many as the value, the n-th of one is the
/// n-th of the other; otherwise (an escaped `$`) the value's start is used.
fn raw_offsets(text: &str, span: &Range<usize>) -> Vec<usize> {
    let raw = text.get(span.clone()).unwrap_or("");
    scan(raw)
        .iter()
        .filter_map(|piece| match piece {
            Piece::Use { at, .. } | Piece::Unterminated { at } => Some(span.start + at),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Whether `name` can be an argument's name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_arg_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The values in force: `[args]`'s defaults with `overrides` laid over
/// them. An override the recipe does not declare is a problem at the
/// `[args]` table (or the file's start); a wrong `[args]` entry is a
/// problem at it. Entries with problems are left out, and their uses are
/// not reported again as unknown (`declared` still names them).
pub(crate) struct Values {
    /// Every argument's value, by name.
    pub values: BTreeMap<String, String>,
    /// Every name written under `[args]`, valid or not.
    declared: Vec<String>,
}

/// Reads `[args]` from the document and lays `overrides` over it.
pub(crate) fn values(
    doc: &Spanned<DeTable<'_>>,
    overrides: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Values {
    let mut values = BTreeMap::new();
    let mut declared = Vec::new();
    let entry = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == ARGS_KEY)
        .map(|(_, v)| v);
    let at = entry.map_or(0..0, |v| v.span());
    match entry.map(|v| (v, v.get_ref())) {
        None => {}
        Some((_, DeValue::Table(table))) => {
            let mut entries: Vec<_> = table.iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (key, value) in entries {
                let name = key.get_ref().as_ref();
                declared.push(name.to_owned());
                if !is_arg_name(name) {
                    p.fail::<()>(
                        key.span(),
                        "not an argument name",
                        format!(
                            "{name:?} in [args] is not a valid argument name: use letters, digits and '_', not starting with a digit, like RELEASE"
                        ),
                    );
                    continue;
                }
                match value.get_ref() {
                    DeValue::String(s) => {
                        values.insert(name.to_owned(), s.to_string());
                    }
                    other => {
                        p.fail::<()>(
                            value.span(),
                            "expected a string",
                            format!(
                                "`{name}` in [args] must be a string (its default value), not {}: write {name} = \"...\"",
                                type_name(other)
                            ),
                        );
                    }
                }
            }
        }
        Some((v, other)) => {
            p.fail::<()>(
                v.span(),
                "expected a table",
                format!(
                    "`args` must be a table of build arguments, not {}: write [args] with NAME = \"default\" lines",
                    type_name(other)
                ),
            );
        }
    }
    for (name, value) in overrides {
        if declared.contains(name) {
            if values.contains_key(name) {
                values.insert(name.clone(), value.clone());
            }
        } else {
            p.fail_help::<()>(
                at.clone(),
                "undeclared argument",
                format!(
                    "--arg {name} is not a build argument of this recipe: declare it under [args] with a default, like {name} = \"...\""
                ),
                if declared.is_empty() {
                    "the recipe declares no build arguments".to_owned()
                } else {
                    format!("[args] declares: {}", declared.join(", "))
                },
            );
        }
    }
    Values { values, declared }
}

/// Replaces `${NAME}` in every string value of the document except
/// `[args]`'s own (defaults are literal), reporting each use of an unknown
/// argument and each unterminated `${` at its line and column. Gives the
/// spans of the values left as written because of such a problem: what the
/// sections then say about them would only repeat it.
pub(crate) fn substitute(
    doc: &mut Spanned<DeTable<'_>>,
    text: &str,
    args: &Values,
    p: &mut Problems,
) -> Vec<Range<usize>> {
    let mut failed = Vec::new();
    for (key, value) in doc.get_mut().iter_mut() {
        if key.get_ref() != ARGS_KEY {
            substitute_value(value, text, args, p, &mut failed);
        }
    }
    failed
}

fn substitute_value(
    value: &mut Spanned<DeValue<'_>>,
    text: &str,
    args: &Values,
    p: &mut Problems,
    failed: &mut Vec<Range<usize>>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match substitute_str(s, &span, text, args, p) {
            Replaced::Nothing => {}
            Replaced::With(new) => *s = Cow::Owned(new),
            Replaced::Failed => failed.push(span),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                substitute_value(item, text, args, p, failed);
            }
        }
        DeValue::Table(table) => {
            for (_, item) in table.iter_mut() {
                substitute_value(item, text, args, p, failed);
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

/// What substituting one string did.
enum Replaced {
    /// It holds no `${`.
    Nothing,
    /// Its new value.
    With(String),
    /// A problem was recorded; the string is left as it was.
    Failed,
}

/// `s` with its arguments replaced.
fn substitute_str(
    s: &str,
    span: &Range<usize>,
    text: &str,
    args: &Values,
    p: &mut Problems,
) -> Replaced {
    if !s.contains("${") {
        return Replaced::Nothing;
    }
    let pieces = scan(s);
    let raw = raw_offsets(text, span);
    let uses = pieces
        .iter()
        .filter(|piece| !matches!(piece, Piece::Text(_)))
        .count();
    let located = |n: usize, len: usize| match raw.get(n) {
        Some(&at) if raw.len() == uses => at..at + len,
        _ => span.clone(),
    };
    let mut out = String::with_capacity(s.len());
    let mut ok = true;
    let mut n = 0;
    for piece in &pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Use { name, .. } => {
                match args.values.get(*name) {
                    Some(value) => out.push_str(value),
                    None if args.declared.iter().any(|d| d == name) => ok = false,
                    None => {
                        ok = false;
                        let known = if args.declared.is_empty() {
                            "the recipe declares no build arguments".to_owned()
                        } else {
                            format!("[args] declares: {}", args.declared.join(", "))
                        };
                        let message = if name.is_empty() {
                            "`${}` names no build argument: write ${NAME} with a name declared under [args], or $${ for a literal ${".to_owned()
                        } else {
                            format!(
                                "unknown build argument `{name}` in `${{{name}}}`: declare it under [args], like {name} = \"...\", or write $${{ for a literal ${{"
                            )
                        };
                        p.fail_help::<()>(
                            located(n, name.len() + 3),
                            "unknown argument",
                            message,
                            known,
                        );
                    }
                }
                n += 1;
            }
            Piece::Unterminated { .. } => {
                ok = false;
                p.fail::<()>(
                    located(n, 2),
                    "unterminated `${`",
                    "`${` has no closing `}`: write ${NAME} for a build argument, or $${ for a literal ${",
                );
                n += 1;
            }
        }
    }
    if ok {
        Replaced::With(out)
    } else {
        Replaced::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece<'_> {
        Piece::Text(Cow::Owned(s.to_owned()))
    }

    #[test]
    fn scan_finds_uses_escapes_and_unterminated() {
        assert_eq!(scan("plain"), [text("plain")]);
        assert_eq!(
            scan("v${A}-x"),
            [text("v"), Piece::Use { name: "A", at: 1 }, text("-x")]
        );
        assert_eq!(scan("$${A}"), [text("${A}")]);
        assert_eq!(scan("a$b$"), [text("a$b$")]);
        assert_eq!(
            scan("${A}${B}"),
            [
                Piece::Use { name: "A", at: 0 },
                Piece::Use { name: "B", at: 4 }
            ]
        );
        assert_eq!(scan("x${A"), [text("x"), Piece::Unterminated { at: 1 }]);
        assert_eq!(scan("${}"), [Piece::Use { name: "", at: 0 }]);
    }

    #[test]
    fn argument_names() {
        assert!(is_arg_name("RELEASE"));
        assert!(is_arg_name("_x1"));
        assert!(!is_arg_name("1X"));
        assert!(!is_arg_name("A-B"));
        assert!(!is_arg_name(""));
    }

    // ---- whole recipes: `check(args, input, expect)` with many tiny cases

    use std::path::Path;

    use crate::{Recipe, RecipeError, parse_with_args};

    const HEAD: &str = "[args]\nA = \"1.0\"\nB = \"b\"\n";

    fn parse(args: &[(&str, &str)], input: &str) -> Result<Recipe, RecipeError> {
        let args = args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_with_args(input, Path::new("kiln.toml"), &args)
    }

    /// `HEAD` then `rest` (its first line is line 4) parsed with `args`:
    /// `["ok"]`, or every diagnostic as `LINE:COLUMN: message-substring`.
    #[track_caller]
    fn check(args: &[(&str, &str)], rest: &str, expect: &[&str]) -> Option<Recipe> {
        let input = format!("{HEAD}{rest}");
        match (parse(args, &input), expect) {
            (Ok(r), ["ok"]) => Some(r),
            (Ok(_), _) => panic!("parsed, but expected {expect:?}\n--- input\n{input}"),
            (Err(e), ["ok"]) => panic!("expected ok, got {e}\n--- input\n{input}"),
            (Err(e), _) => {
                let got: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
                assert_eq!(got.len(), expect.len(), "{got:#?}\n--- input\n{input}");
                for (d, want) in e.diagnostics().iter().zip(expect) {
                    let (at, text) = want.split_once(": ").expect("LINE:COLUMN: message");
                    assert!(
                        format!("{}:{}", d.line, d.column) == at && d.message.contains(text),
                        "expected {want}\n     got {d}\n--- input\n{input}"
                    );
                }
                None
            }
        }
    }

    const NAME: &str = "[image]\nname = \"t\"\n";

    #[test]
    fn defaults_and_overrides_replace_every_use() {
        let r = check(&[], &format!("{NAME}version = \"${{A}}\"\n"), &["ok"]).expect("ok");
        assert_eq!(r.image.version.as_deref(), Some("1.0"));
        assert_eq!(r.args["A"], "1.0");
        assert_eq!(r.args["B"], "b");
        let r = check(
            &[("A", "2.0")],
            &format!("{NAME}version = \"v${{A}}-${{B}}${{A}}\"\n"),
            &["ok"],
        )
        .expect("ok");
        assert_eq!(r.image.version.as_deref(), Some("v2.0-b2.0"));
        assert_eq!(r.args["A"], "2.0");
    }

    #[test]
    fn any_string_value_anywhere() {
        let rest = format!(
            "{NAME}base = \"oci:${{B}}/layout\"\n\
             [config]\nenv = {{ V = \"${{A}}\" }}\nlabels = {{ \"x\" = \"${{B}}\" }}\ncmd = [\"${{A}}\"]\n\
             [[layer]]\nname = \"l${{B}}\"\nrun = \"echo ${{A}}\"\nenv = {{ E = \"${{B}}\" }}\n\
             [[layer]]\nname = \"f\"\nfiles = [{{ src = \"${{B}}/x\", dest = \"/opt/${{B}}/x\" }}]\n\
             [[check]]\nname = \"c\"\ncommand = [\"/bin/echo\", \"${{A}}\"]\nstdout_contains = \"${{A}}\"\n"
        );
        let r = check(&[("B", "q")], &rest, &["ok"]).expect("ok");
        assert_eq!(r.image.base.to_string(), "oci:q/layout");
        assert_eq!(r.config.env["V"], "1.0");
        assert_eq!(r.config.labels["x"], "q");
        assert_eq!(r.config.cmd, Some(vec!["1.0".to_owned()]));
        assert_eq!(r.layers[0].name, "lq");
        let crate::LayerKind::Run(run) = &r.layers[0].kind else {
            panic!("a run layer")
        };
        assert_eq!(run.run.to_string(), "/bin/sh -c \"echo 1.0\"");
        assert_eq!(run.env["E"], "q");
        let crate::LayerKind::Files(files) = &r.layers[1].kind else {
            panic!("a file layer")
        };
        let copy = &files.files[0];
        assert_eq!((copy.src.as_str(), copy.dest.as_str()), ("q/x", "/opt/q/x"));
        let crate::CheckKind::Command(c) = &r.checks[0].kind else {
            panic!("a command check")
        };
        assert_eq!(c.argv[1], "1.0");
        assert_eq!(c.stdout_contains.as_deref(), Some("1.0"));
    }

    #[test]
    fn escapes_and_literal_dollars() {
        let rest =
            format!("{NAME}[config]\ncmd = [\"$${{A}}\", \"$A\", \"a$\", \"$$\", \"$$${{A}}\"]\n");
        let r = check(&[], &rest, &["ok"]).expect("ok");
        assert_eq!(
            r.config.cmd.expect("cmd"),
            ["${A}", "$A", "a$", "$$", "$${A}"]
        );
        // Defaults are literal: `${` in [args] is not replaced.
        let input = "[args]\nX = \"${Y}\"\n[image]\nname = \"t\"\n[config]\ncmd = [\"${X}\"]\n";
        let r = parse(&[], input).expect("ok");
        assert_eq!(r.config.cmd, Some(vec!["${Y}".to_owned()]));
    }

    #[test]
    fn values_are_checked_after_substitution() {
        let version = format!("{NAME}version = \"${{A}}\"\n");
        check(
            &[("A", "not a tag!")],
            &version,
            &["6:11: invalid version \"not a tag!\""],
        );
        check(
            &[("B", "nope:x")],
            &format!("{NAME}base = \"${{B}}\"\n"),
            &["6:8: "],
        );
        check(&[("A", "-1")], "[image]\nname = \"${A}\"\n", &["5:8: "]);
    }

    #[test]
    fn unknown_names_are_located_at_their_use() {
        check(
            &[],
            &format!("{NAME}version = \"${{C}}\"\n"),
            &["6:12: unknown build argument `C`"],
        );
        // The second use on a line, after an escape and another use.
        let rest = format!("{NAME}version = \"$${{x}}${{A}}-${{NOPE}}\"\n");
        check(&[], &rest, &["6:22: unknown build argument `NOPE`"]);
        // Every unknown use is reported, in file order.
        let rest =
            format!("{NAME}[config]\ncmd = [\"${{X}}\", \"${{Y}}\"]\nworkdir = \"/${{Z}}\"\n");
        check(&[], &rest, &["7:9: `X`", "7:17: `Y`", "8:13: `Z`"]);
        check(
            &[],
            &format!("{NAME}version = \"${{}}\"\n"),
            &["6:12: names no build argument"],
        );
        // Multi-line and literal strings keep their positions.
        let rest = format!("{NAME}[[layer]]\nname = \"r\"\nrun = '''\necho\n  ${{Q}}'''\n");
        check(&[], &rest, &["10:3: `Q`"]);
        check(&[], &format!("{NAME}version = '${{Q}}'\n"), &["6:12: `Q`"]);
        // A recipe without [args] knows no argument.
        let e = parse(&[], "[image]\nname = \"t\"\nversion = \"${A}\"\n").expect_err("unknown");
        assert_eq!(
            e.diagnostics()[0].to_string(),
            "kiln.toml:3:12: unknown build argument `A` in `${A}`: declare it under [args], like A = \"...\", or write $${ for a literal ${"
        );
        let help = e.diagnostics()[0].help.as_deref();
        assert_eq!(help, Some("the recipe declares no build arguments"));
    }

    #[test]
    fn an_escape_written_as_a_toml_escape_falls_back_to_the_value() {
        // `\u0024` is `$`: the raw text holds no `${`, so the value is blamed.
        check(
            &[],
            &format!("{NAME}version = \"\\u0024{{Q}}\"\n"),
            &["6:11: `Q`"],
        );
    }

    #[test]
    fn unterminated_is_located() {
        check(
            &[],
            &format!("{NAME}version = \"x${{A\"\n"),
            &["6:13: `${` has no closing `}`"],
        );
        check(
            &[],
            &format!("{NAME}version = \"${{A}}${{\"\n"),
            &["6:16: no closing"],
        );
    }

    #[test]
    fn undeclared_overrides_name_themselves() {
        let e = parse(&[("X", "1")], NAME).expect_err("undeclared");
        assert_eq!(
            e.diagnostics()[0].to_string(),
            "kiln.toml:1:1: --arg X is not a build argument of this recipe: declare it under [args] with a default, like X = \"...\""
        );
        let help = e.diagnostics()[0].help.as_deref();
        assert_eq!(help, Some("the recipe declares no build arguments"));
        // With [args], at its table and listing what it declares.
        let e = parse(&[("NOPE", "1")], &format!("{NAME}{HEAD}")).expect_err("undeclared");
        assert_eq!((e.diagnostics()[0].line, e.diagnostics()[0].column), (3, 1));
        assert_eq!(
            e.diagnostics()[0].help.as_deref(),
            Some("[args] declares: A, B")
        );
    }

    #[test]
    fn bad_declarations() {
        let input = |args: &str, rest: &str| format!("{args}{NAME}{rest}");
        let e = parse(&[], &input("[args]\nN = 1\n", "")).expect_err("bad");
        assert_eq!((e.diagnostics()[0].line, e.diagnostics()[0].column), (2, 5));
        assert!(
            e.diagnostics()[0]
                .message
                .contains("`N` in [args] must be a string")
        );
        let e = parse(&[], &input("[args]\n\"1X\" = \"a\"\n", "")).expect_err("bad");
        assert!(
            e.diagnostics()[0]
                .message
                .contains("not a valid argument name")
        );
        assert_eq!(e.diagnostics()[0].line, 2);
        let e = parse(&[], &input("args = 3\n", "")).expect_err("bad");
        assert!(
            e.diagnostics()[0]
                .message
                .contains("`args` must be a table")
        );
        // A use of a badly declared argument is not reported a second time.
        let e = parse(&[], &input("[args]\nN = 1\n", "version = \"${N}\"\n")).expect_err("bad");
        assert_eq!(e.diagnostics().len(), 1, "{e}");
    }

    #[test]
    fn the_same_args_give_the_same_value() {
        let input = format!("{HEAD}{NAME}version = \"${{A}}\"\n");
        let a = parse(&[("A", "3")], &input).expect("ok");
        let b = parse(&[("A", "3")], &input).expect("ok");
        assert_eq!(a, b);
        let json = serde_json::to_string(&a).expect("json");
        let back: Recipe = serde_json::from_str(&json).expect("back");
        assert_eq!(back, a);
        assert_ne!(parse(&[("A", "4")], &input).expect("ok"), a);
    }
}
