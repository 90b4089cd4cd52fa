//! What the command line prints for an error. The core library's messages
//! speak to embedders: they name `LookalikeConfig::min_seeds` or
//! `RuntimeConfig::library_path`. A person at the command line typed flags,
//! so at this boundary every core error that names a Rust setting is worded
//! again with the active command's flag (`--min-seeds`, `--ort-lib`), and the
//! runtime error gets the checkout's own remedy (`scripts/setup.sh`).

use groupwise::Error;

/// The message for `err`, raised by the command `command` (the leaf
/// subcommand, e.g. `eval lookalike`): core errors that name a Rust API are
/// re-worded in terms of the command's flags; other errors print as they are.
pub fn message(err: &(dyn std::error::Error + 'static), command: &clap::Command) -> String {
    let has = |flag: &str| command.get_arguments().any(|a| a.get_long() == Some(flag));
    let Some(core) = err.downcast_ref::<Error>() else {
        return err.to_string();
    };
    match core {
        // The command line sets `RuntimeConfig::library_path` from --ort-lib only.
        Error::RuntimeUnavailable { reason } => format!(
            "ONNX Runtime is not available: {}. Run `scripts/setup.sh` (installs it into \
             .groupwise/lib/){}, or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.22 \
             or newer",
            reason.replace("RuntimeConfig::library_path", "--ort-lib"),
            if has("ort-lib") {
                ", pass its path with --ort-lib"
            } else {
                ""
            }
        ),
        Error::TooFewSeeds {
            usable,
            minimum,
            unknown,
        } => format!(
            "only {usable} usable seeds (minimum {minimum}; {unknown} seed ids are not in the \
             index); add seeds{}",
            if has("min-seeds") {
                " or lower --min-seeds"
            } else {
                ""
            }
        ),
        Error::BelowPrivacyFloor { users, floor } => format!(
            "{users} users cannot form a segment of at least {floor} users (the privacy floor); \
             add users{}",
            if has("min-size") {
                " or lower --min-size"
            } else {
                ""
            }
        ),
        Error::UnknownSegment(id) => format!(
            "segment {id} does not exist; `groupwise segments` lists the segments it builds"
        ),
        Error::InvalidArgument {
            name: "histories", ..
        } => format!(
            "this model takes feature rows, not interaction histories (its metadata does not \
             declare groupwise.feature_layout = item_bag); {}",
            if has("features") {
                "pass them with --features"
            } else {
                "encode them with `groupwise encode --features`"
            }
        ),
        Error::InvalidArgument { name, problem } => {
            let flag = name.replace('_', "-");
            if has(&flag) {
                format!("invalid value for --{flag}: {problem}")
            } else {
                core.to_string()
            }
        }
        _ => core.to_string(),
    }
}

/// The leaf subcommand of `root` that `matches` selected (`root` itself when
/// none), for [`message`].
pub fn active_command(root: &clap::Command, matches: &clap::ArgMatches) -> clap::Command {
    let mut command = root.clone();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        match command.find_subcommand(name) {
            Some(c) => command = c.clone(),
            None => break,
        }
        m = sub;
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn command(path: &[&str]) -> clap::Command {
        let mut c = crate::Cli::command();
        for name in path {
            c = c.find_subcommand(name).expect("subcommand").clone();
        }
        c
    }

    /// Every core error that names a Rust setting, as the CLI prints it from
    /// each command: no Rust path (`Type::field`) is left, and the flag is
    /// named where the command has it.
    #[test]
    fn core_errors_are_worded_with_the_commands_flags() {
        let errors = [
            Error::RuntimeUnavailable {
                reason: "no library found".into(),
            },
            Error::TooFewSeeds {
                usable: 2,
                minimum: 100,
                unknown: 1,
            },
            Error::BelowPrivacyFloor {
                users: 10,
                floor: 50,
            },
            Error::RuntimeUnavailable {
                reason: "RuntimeConfig::library_path points to /x.so, which is not a file".into(),
            },
            Error::UnknownSegment(7),
            Error::InvalidArgument {
                name: "histories",
                problem: "this features model does not declare groupwise.feature_layout = \
                          item_bag; build its feature rows yourself and call encode_features"
                    .into(),
            },
        ];
        let commands: &[&[&str]] = &[
            &["encode"],
            &["lookalike"],
            &["segments"],
            &["demo"],
            &["eval", "lookalike"],
            &["eval", "segments"],
            &["eval", "slates"],
            &["bench", "encode"],
        ];
        for path in commands {
            let c = command(path);
            for e in &errors {
                let m = message(e, &c);
                assert!(!m.contains("::"), "{path:?}: {m}");
                assert!(!m.contains("encode_features"), "{path:?}: {m}");
            }
        }
        let m = |e: &Error, path: &[&str]| message(e, &command(path));
        assert!(m(&errors[0], &["encode"]).contains("--ort-lib"));
        assert!(m(&errors[0], &["encode"]).contains("scripts/setup.sh"));
        assert!(m(&errors[1], &["lookalike"]).contains("lower --min-seeds"));
        assert!(m(&errors[1], &["eval", "lookalike"]).contains("lower --min-seeds"));
        assert!(m(&errors[2], &["segments"]).contains("lower --min-size"));
        assert!(m(&errors[3], &["encode"]).contains("--ort-lib points to /x.so"));
        assert!(m(&errors[5], &["encode"]).contains("pass them with --features"));
        assert!(m(&errors[5], &["eval", "lookalike"]).contains("groupwise encode --features"));
        // A value out of range names the flag of the same name.
        let bad = Error::InvalidArgument {
            name: "resolution",
            problem: "must be finite and > 0".into(),
        };
        assert_eq!(
            m(&bad, &["segments"]),
            "invalid value for --resolution: must be finite and > 0"
        );
        // Errors that are not the core's print as they are.
        let plain: Box<dyn std::error::Error> = "--out x: is a directory".into();
        assert_eq!(
            message(plain.as_ref(), &command(&["lookalike"])),
            "--out x: is a directory"
        );
    }
}
