//! The shell completions and the manual page come from the real binary's
//! CLI definition: every subcommand `hvctl --help` lists (whatever they are
//! when this runs) and every global option is in each of them.

use std::process::Command;

fn hvctl(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .args(args)
        .env_remove("KESTREL_HOST")
        .env_remove("KESTREL_SOCKET")
        .output()
        .unwrap_or_else(|e| panic!("running hvctl: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subcommands `hvctl --help` lists (the indented first words under
/// `Commands:`), `help` aside.
fn subcommands() -> Vec<String> {
    let (status, help, _) = hvctl(&["--help"]);
    assert_eq!(status, Some(0), "{help}");
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_string)
        .collect();
    assert!(
        list.iter().any(|c| c == "list") && list.iter().any(|c| c == "man"),
        "{help}"
    );
    list
}

#[test]
fn completions_for_each_shell_name_every_command_and_option() {
    let commands = subcommands();
    for (shell, marker) in [
        ("bash", "complete -F _hvctl"),
        ("zsh", "#compdef hvctl"),
        ("fish", "complete -c hvctl"),
        ("elvish", "hvctl"),
        ("powershell", "hvctl"),
    ] {
        let (status, out, err) = hvctl(&["completions", shell]);
        assert_eq!(status, Some(0), "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: no `{marker}`");
        for c in &commands {
            assert!(out.contains(c.as_str()), "{shell} completions lack `{c}`");
        }
        for opt in ["socket", "json"] {
            assert!(out.contains(opt), "{shell} completions lack --{opt}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let (status, out, err) = hvctl(&["completions", "tcsh"]);
    assert_eq!(status, Some(2), "{out}{err}");
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn man_page_is_roff_with_every_command_and_files() {
    let (status, out, err) = hvctl(&["man"]);
    assert_eq!(status, Some(0), "{err}");
    assert!(out.starts_with(".ie") || out.starts_with(".TH"), "not roff");
    assert!(out.contains(".TH hvctl 1"), "no title line");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
        ".SH FILES",
    ] {
        assert!(out.contains(section), "man page lacks {section}");
    }
    for c in subcommands() {
        // roff escapes every hyphen: `mem-set` is `mem\-set`.
        let roff = c.replace('-', "\\-");
        assert!(
            out.contains(&format!("hvctl\\-{roff}")) || out.contains(&c),
            "lacks {c}"
        );
    }
    assert!(out.contains("\\-\\-socket"), "lacks --socket");
    // It renders: man(1), where installed, formats it without a warning.
    if let Ok(child) = Command::new("man")
        .args(["--warnings", "-l", "-"])
        .env("MANWIDTH", "80")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        let mut child = child;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(out.as_bytes());
        }
        if let Ok(o) = child.wait_with_output() {
            let text = String::from_utf8_lossy(&o.stdout);
            if o.status.success() {
                assert!(text.contains("SUBCOMMANDS"), "{text}");
            }
        }
    }
}
