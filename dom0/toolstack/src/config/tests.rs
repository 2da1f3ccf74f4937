use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::*;

const MODULES: &[&str] = &["web.elf", "db.elf", "hello", "vmlinux"];

fn ok(text: &str) -> BootConfig {
    match parse(
        "guests.toml",
        text,
        &Limits::default(),
        Images::Only(MODULES),
    ) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<String> {
    match parse(
        "guests.toml",
        text,
        &Limits::default(),
        Images::Only(MODULES),
    ) {
        Ok(c) => panic!("accepted a bad file: {c:?}"),
        Err(e) => e.errors().iter().map(ToString::to_string).collect(),
    }
}

fn one_err(text: &str) -> String {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e[0].clone()
}

#[test]
fn full_domain_and_defaults() {
    let c = ok(r#"
[[domain]]
name = "web"
image = "web.elf"
memory = 64
vcpus = 2
weight = 512
cap = 150
cmdline = "port=80 workers=2"
autostart = false

[[domain]]
name = "db"
image = "db.elf"
memory = 0x80
"#);
    assert_eq!(c.domains.len(), 2);
    let web = &c.domains[0];
    assert_eq!(
        web,
        &DomainConfig {
            name: "web".into(),
            image: "web.elf".into(),
            memory_mib: 64,
            vcpus: 2,
            weight: 512,
            cap: 150,
            cmdline: "port=80 workers=2".into(),
            autostart: false,
            heap_budget_kib: 0,
            on_end: Policies::default(),
            linux: false,
            initrd: None,
            uuid: None,
            target_bytes: None,
            pci: Vec::new(),
            line: 2,
        }
    );
    assert_eq!(web.memory_bytes(), 64 << 20);
    let db = &c.domains[1];
    assert_eq!(
        (db.memory_mib, db.vcpus, db.weight, db.cap),
        (128, 1, 256, 0)
    );
    assert_eq!((db.cmdline.as_str(), db.autostart, db.line), ("", true, 12));
    let auto: Vec<&str> = c.autostart().map(|d| d.name.as_str()).collect();
    assert_eq!(auto, ["db"]);
}

#[test]
fn empty_file_is_no_domains() {
    assert!(ok("").domains.is_empty());
    assert!(ok("# only a comment\n").domains.is_empty());
}

#[test]
fn wrong_type_names_file_line_column_domain_and_field() {
    let e = one_err("[[domain]]\nname = \"web\"\nimage = \"web.elf\"\nmemory = \"lots\"\n");
    assert_eq!(
        e,
        r#"guests.toml:4:10: domain "web": field "memory": expected an integer number of MiB, found "lots""#
    );
}

#[test]
fn typo_is_rejected_with_a_suggestion() {
    // The typo is reported, and so is the field it failed to set.
    let e = errs("[[domain]]\nname = \"web\"\nimage = \"web.elf\"\nmemroy = 64\n");
    assert_eq!(
        e,
        [
            r#"guests.toml:1:1: domain "web": field "memory": missing (it is required)"#,
            r#"guests.toml:4:1: domain "web": field "memroy": unknown field, did you mean "memory"?"#,
        ]
    );
    let e = errs("[[domain]]\nname = \"web\"\nimage = \"web.elf\"\nmemory = 4\nflavour = 1\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("field \"flavour\": unknown field (known: name, image"),
        "{e:?}"
    );
}

#[test]
fn missing_required_fields_point_at_the_header() {
    let e = errs("\n[[domain]]\nname = \"a\"\n");
    assert_eq!(
        e,
        [
            r#"guests.toml:2:1: domain "a": field "image": missing (it is required)"#,
            r#"guests.toml:2:1: domain "a": field "memory": missing (it is required)"#,
        ]
    );
    let e = errs("[[domain]]\nimage = \"hello\"\nmemory = 4\n");
    assert_eq!(
        e,
        [r#"guests.toml:1:1: domain #1: field "name": missing (it is required)"#]
    );
}

#[test]
fn ranges() {
    let base = "[[domain]]\nname = \"a\"\nimage = \"hello\"\n";
    let cases: &[(&str, &str)] = &[
        (
            "memory = 0",
            r#"field "memory": 0 is out of range 4 ..= 1024"#,
        ),
        ("memory = 1026", r#"field "memory": 1026 is out of range"#),
        ("memory = -5", r#"field "memory": -5 is out of range"#),
        (
            "memory = 99999999999999999999",
            r#"field "memory": 99999999999999999999 is out of range"#,
        ),
        (
            "memory = 1.5",
            r#"expected an integer number of MiB, found the float 1.5"#,
        ),
        (
            "memory = 8\nvcpus = 0",
            r#"field "vcpus": 0 is out of range 1 ..= 64"#,
        ),
        (
            "memory = 8\nvcpus = 65",
            r#"field "vcpus": 65 is out of range 1 ..= 64"#,
        ),
        (
            "memory = 8\nweight = 0",
            r#"field "weight": 0 is out of range 1 ..= 65535"#,
        ),
        (
            "memory = 8\nweight = 65536",
            r#"field "weight": 65536 is out of range"#,
        ),
        (
            "memory = 8\ncap = 101",
            r#"field "cap": 101 is out of range 0 ..= 100"#,
        ),
        (
            "memory = 8\nvcpus = 3\ncap = 301",
            r#"field "cap": 301 is out of range 0 ..= 300"#,
        ),
        (
            "memory = 8\nautostart = \"yes\"",
            r#"field "autostart": expected true or false, found "yes""#,
        ),
        (
            "memory = 8\ncmdline = 3",
            r#"field "cmdline": expected a string, found the integer 3"#,
        ),
    ];
    for (extra, want) in cases {
        let e = one_err(&alloc::format!("{base}{extra}\n"));
        assert!(e.contains(want), "{extra:?}: got {e:?}, want {want:?}");
        assert!(e.starts_with("guests.toml:"), "{e}");
    }
    let c = ok(&alloc::format!(
        "{base}memory = 8\nvcpus = 4\ncap = 400\nweight = 65535\n"
    ));
    assert_eq!((c.domains[0].cap, c.domains[0].weight), (400, 65535));
}

#[test]
fn limits_are_the_callers() {
    let limits = Limits {
        min_memory_mib: 16,
        max_memory_mib: 64,
        memory_align_mib: 1,
        max_vcpus: 2,
    };
    let text = "[[domain]]\nname = \"a\"\nimage = \"x\"\nmemory = 8\nvcpus = 3\n";
    let e = parse("f.toml", text, &limits, Images::Any).err();
    let e: Vec<String> = e
        .iter()
        .flat_map(|e| e.errors())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].ends_with("8 is out of range 16 ..= 64"), "{e:?}");
    assert!(e[1].ends_with("3 is out of range 1 ..= 2"), "{e:?}");
}

#[test]
fn cmdline_limits() {
    let long = "x".repeat(CMDLINE_MAX + 1);
    let text = alloc::format!(
        "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"{long}\"\n"
    );
    assert!(one_err(&text).ends_with("is 257 bytes long, at most 256 fit"));
    let text = "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\ncmdline = \"a\\u0000b\"\n";
    assert!(one_err(text).ends_with("must not contain NUL characters"));
}

#[test]
fn names() {
    for bad in [
        "",
        "9lives",
        "-x",
        "a b",
        "caf\u{e9}",
        "dom0",
        &"a".repeat(33),
    ] {
        let text = alloc::format!("[[domain]]\nname = {bad:?}\nimage = \"hello\"\nmemory = 4\n");
        let e = one_err(&text);
        assert!(
            e.starts_with("guests.toml:2:8: domain #1: field \"name\": "),
            "{bad:?}: {e}"
        );
    }
    let c = ok("[[domain]]\nname = \"Web-1_a.b\"\nimage = \"hello\"\nmemory = 4\n");
    assert_eq!(c.domains[0].name, "Web-1_a.b");
    assert!(valid_name(&"a".repeat(31)).is_ok());
    assert!(valid_name(&"a".repeat(32)).is_err());
}

#[test]
fn repeated_names() {
    let d = "[[domain]]\nname = \"web\"\nimage = \"hello\"\nmemory = 4\n";
    let e = errs(&alloc::format!("{d}\n{d}\n{d}"));
    assert_eq!(
        e,
        [
            r#"guests.toml:6:1: domain "web": field "name": name "web" is already used by the domain at line 1"#,
            r#"guests.toml:11:1: domain "web": field "name": name "web" is already used by the domain at line 1"#,
        ]
    );
}

#[test]
fn images_must_be_boot_modules() {
    let text = "[[domain]]\nname = \"a\"\nimage = \"nginx.elf\"\nmemory = 4\n";
    assert_eq!(
        one_err(text),
        r#"guests.toml:3:9: domain "a": field "image": "nginx.elf" is not a boot module (modules: web.elf, db.elf, hello, vmlinux)"#
    );
    let e = parse("g", text, &Limits::default(), Images::Only(&[])).err();
    assert!(e.is_some_and(|e| {
        e.to_string()
            .ends_with("is not a boot module (there are none)")
    }));
    assert!(parse("g", text, &Limits::default(), Images::Any).is_ok());
    let empty = "[[domain]]\nname = \"a\"\nimage = \"\"\nmemory = 4\n";
    assert!(parse("g", empty, &Limits::default(), Images::Any).is_err());
}

#[test]
fn every_error_is_reported_and_nothing_is_returned() {
    let text = r#"[[domain]]
name = "good"
image = "hello"
memory = 4

[[domain]]
name = "bad"
image = "hello"
memory = "lots"
vcpus = true
"#;
    let e = errs(text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("guests.toml:9:10: domain \"bad\": field \"memory\""));
    assert!(e[1].starts_with("guests.toml:10:9: domain \"bad\": field \"vcpus\""));
}

#[test]
fn document_shape_errors() {
    let e = one_err("[domain]\nname = \"a\"\n");
    assert!(
        e.starts_with("guests.toml:1:2: field \"domain\": must be an array of tables"),
        "{e}"
    );
    let e = one_err("domains = 1\n");
    assert_eq!(
        e,
        r#"guests.toml:1:1: unknown top-level key "domains" (expected [[domain]] tables)"#
    );
    let e = one_err("domain = [1]\n");
    assert!(
        e.starts_with("guests.toml:1:11: domain #1: expected a table, found the integer 1"),
        "{e}"
    );
}

#[test]
fn toml_syntax_errors_have_a_position() {
    let e = one_err("[[domain]]\nname = \"a\"\nmemory = \n");
    assert!(e.starts_with("guests.toml:3:"), "{e}");
    let e = one_err("[[domain]]\nname = \"a\"\nname = \"b\"\n");
    assert!(e.starts_with("guests.toml:3:"), "duplicate key: {e}");
    let e = one_err("[[domain]\n");
    assert!(e.starts_with("guests.toml:1:"), "{e}");
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../../guests.toml");
    let c = match parse("guests.toml", text, &Limits::default(), Images::Any) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(c.domains.len() >= 2);
    assert!(c.autostart().count() >= 1);
}

#[test]
fn memory_follows_the_hypervisors_rules() {
    // What HC_DOMCTL_CREATE would refuse is refused here, with its line.
    let base = "[[domain]]\nname = \"a\"\nimage = \"hello\"\n";
    let e = one_err(&alloc::format!("{base}memory = 5\n"));
    assert!(
        e.starts_with("guests.toml:4:10: domain \"a\": field \"memory\""),
        "{e}"
    );
    assert!(e.ends_with("5 is not a multiple of 2 MiB"), "{e}");
    assert!(
        one_err(&alloc::format!("{base}memory = 2\n")).ends_with("2 is out of range 4 ..= 1024")
    );
    assert!(ok(&alloc::format!("{base}memory = 6\n")).domains[0].memory_bytes() == 6 << 20);
    let d = Limits::default();
    assert_eq!(d.min_memory_mib << 20, pvabi::DOMCTL_MEMORY_MIN);
    assert_eq!(d.max_memory_mib << 20, pvabi::DOMCTL_MEMORY_MAX);
    assert_eq!(d.max_vcpus, pvabi::DOMCTL_MAX_VCPUS);
    assert_eq!(CMDLINE_MAX, pvabi::DOMCTL_CMDLINE_MAX as usize);
}

#[test]
fn heap_budget_is_kib_within_the_hypervisor_limits() {
    let base = "[[domain]]\nname = \"a\"\nimage = \"web.elf\"\nmemory = 8\n";
    let c = ok(&alloc::format!("{base}heap_budget = 256\n"));
    assert_eq!(c.domains[0].heap_budget_kib, 256);
    assert_eq!(c.domains[0].heap_budget_bytes(), 256 << 10);
    assert_eq!(
        ok(base).domains[0].heap_budget_bytes(),
        0,
        "absent: the hypervisor's default"
    );
    for bad in [
        "heap_budget = 15",
        "heap_budget = 65537",
        "heap_budget = \"lots\"",
    ] {
        let e = one_err(&alloc::format!("{base}{bad}\n"));
        assert!(e.contains("field \"heap_budget\""), "{bad}: {e}");
    }
}

#[test]
fn end_policies_default_to_xls_and_are_read() {
    let c = ok(
        "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\n\n\
                [[domain]]\nname = \"b\"\nimage = \"hello\"\nmemory = 4\n\
                on_poweroff = \"restart\"\non_reboot = \"preserve\"\non_crash = \"restart\"\n",
    );
    assert_eq!(
        c.domains[0].on_end,
        Policies {
            on_poweroff: OnEnd::Destroy,
            on_reboot: OnEnd::Restart,
            on_crash: OnEnd::Destroy,
        }
    );
    assert_eq!(
        c.domains[1].on_end,
        Policies {
            on_poweroff: OnEnd::Restart,
            on_reboot: OnEnd::Preserve,
            on_crash: OnEnd::Restart,
        }
    );
}

#[test]
fn bad_end_policies_name_file_line_column_and_field() {
    let e = errs(
        "[[domain]]\nname = \"a\"\nimage = \"hello\"\nmemory = 4\n\
                  on_crash = \"reboot\"\non_reboot = 1\non_poweof = \"destroy\"\n",
    );
    assert_eq!(
        e,
        [
            "guests.toml:5:12: domain \"a\": field \"on_crash\": \"reboot\" is not a policy \
             (expected \"destroy\", \"restart\" or \"preserve\")",
            "guests.toml:6:13: domain \"a\": field \"on_reboot\": expected \"destroy\", \
             \"restart\" or \"preserve\"",
            "guests.toml:7:1: domain \"a\": field \"on_poweof\": unknown field, did you mean \
             \"on_poweroff\"?",
        ]
    );
}

/// A Linux domain (issue 13): `kernel` instead of `image`, an `initrd`,
/// and a command line up to 2,047 bytes.
#[test]
fn linux_domains() {
    let long = "x".repeat(LINUX_CMDLINE_MAX);
    let c = ok(&alloc::format!(
        "[[domain]]\nname = \"lx\"\nkernel = \"vmlinux\"\ninitrd = \"initrd.cpio\"\nmemory = 64\ncmdline = \"{long}\"\n"
    ));
    let d = &c.domains[0];
    assert!(d.linux);
    assert_eq!(d.image, "vmlinux");
    assert_eq!(d.initrd.as_deref(), Some("initrd.cpio"));
    assert_eq!(d.cmdline.len(), 2047);
    let e = one_err(&alloc::format!(
        "[[domain]]\nname = \"lx\"\nkernel = \"vmlinux\"\nmemory = 64\ncmdline = \"{long}x\"\n"
    ));
    assert!(e.contains("2048 bytes long, at most 2047"), "{e}");
    let e = one_err("[[domain]]\nname = \"a\"\nimage = \"hello\"\ninitrd = \"i\"\nmemory = 64\n");
    assert!(e.contains("only a Linux domain"), "{e}");
    let e =
        one_err("[[domain]]\nname = \"a\"\nimage = \"hello\"\nkernel = \"vmlinux\"\nmemory = 64\n");
    assert!(e.contains("either an image or a kernel"), "{e}");
    let e = one_err("[[domain]]\nname = \"a\"\nkernel = \"nope\"\nmemory = 64\n");
    assert!(
        e.contains("field \"kernel\"") && e.contains("not a boot module"),
        "{e}"
    );
}

#[test]
fn uuid_given_checked_and_unique() {
    let text = "[[domain]]\nname = \"a\"\nimage = \"web.elf\"\nmemory = 4\nuuid = \"123E4567-e89b-42d3-a456-426614174000\"\n\n\
                [[domain]]\nname = \"b\"\nimage = \"web.elf\"\nmemory = 4\n";
    let Ok(c) = parse("u.toml", text, &Limits::default(), Images::Any) else {
        panic!("u.toml did not parse");
    };
    assert_eq!(
        c.domains[0].uuid.map(|u| u.to_string()).as_deref(),
        Some("123e4567-e89b-42d3-a456-426614174000")
    );
    assert_eq!(c.domains[1].uuid, None, "generated later, by dom0");
    let bad = "[[domain]]\nname = \"a\"\nimage = \"web.elf\"\nmemory = 4\nuuid = \"not-a-uuid\"\n";
    let e = parse("u.toml", bad, &Limits::default(), Images::Any)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("u.toml:5:") && e.contains("field \"uuid\"") && e.contains("is not a UUID"),
        "{e}"
    );
    let twice = "[[domain]]\nname = \"a\"\nimage = \"web.elf\"\nmemory = 4\nuuid = \"123e4567-e89b-42d3-a456-426614174000\"\n\n\
                 [[domain]]\nname = \"b\"\nimage = \"web.elf\"\nmemory = 4\nuuid = \"123e4567-e89b-42d3-a456-426614174000\"\n";
    let e = parse("u.toml", twice, &Limits::default(), Images::Any)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("already used by domain \"a\" at line 1"), "{e}");
}

mod network_table {
    use super::super::network::{Address, NetworkConfig};
    use super::super::{Images, Limits, parse};

    fn net(text: &str, modules: &[&str]) -> Result<Option<NetworkConfig>, alloc::string::String> {
        parse("dom0.toml", text, &Limits::default(), Images::Only(modules))
            .map(|c| c.network)
            .map_err(|e| alloc::format!("{e}"))
    }

    #[test]
    fn static_and_dhcp() {
        let n = net(
            "[network]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\nkey_files = [\"ops.key\"]\n",
            &["ops.key"],
        );
        let n = n.ok().flatten();
        assert_eq!(
            n.as_ref().map(|n| (n.address, n.gateway, n.port)),
            Some((
                Address::Static {
                    ip: [10, 0, 2, 15],
                    prefix: 24
                },
                Some([10, 0, 2, 2]),
                4444
            ))
        );
        let n = net(
            "[network]\naddress = \"dhcp\"\nport = 7000\nkey_files = [\"a\", \"b\"]\n",
            &["a", "b"],
        );
        let n = n.ok().flatten();
        assert_eq!(
            n.map(|n| (n.address, n.port, n.key_files.len())),
            Some((Address::Dhcp, 7000, 2))
        );
    }

    #[test]
    fn every_mistake_is_named() {
        for (text, want) in [
            ("[network]\naddress = \"dhcp\"\n", "key_files\": missing"),
            (
                "[network]\naddress = \"dhcp\"\nkey_files = []\n",
                "key_files\": missing",
            ),
            (
                "[network]\naddress = \"10.0.2/24\"\nkey_files = [\"k\"]\n",
                "address\": expected \"dhcp\"",
            ),
            (
                "[network]\naddress = \"10.0.2.15/33\"\nkey_files = [\"k\"]\n",
                "address\": expected",
            ),
            (
                "[network]\naddress = \"10.0.2.15/24\"\ngateway = \"x\"\nkey_files = [\"k\"]\n",
                "gateway\": expected",
            ),
            (
                "[network]\naddress = \"dhcp\"\ngateway = \"10.0.2.2\"\nkey_files = [\"k\"]\n",
                "comes from the DHCP",
            ),
            (
                "[network]\naddress = \"dhcp\"\nport = 0\nkey_files = [\"k\"]\n",
                "port\": 0 is out of range",
            ),
            ("[network]\nkey_files = [\"k\"]\n", "address\": missing"),
            (
                "[network]\naddress = \"dhcp\"\nkey_files = [\"k\"]\nmtu = 9000\n",
                "unknown field \"mtu\"",
            ),
            ("network = 3\n", "expected a table [network]"),
        ] {
            let e = net(text, &["k"]).err().unwrap_or_default();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}

#[test]
fn pci_functions_are_checked_by_name() {
    let c = ok(r#"
[[domain]]
name = "drv"
image = "hello"
memory = 4
pci = ["0000:00:06.0", "0001:ff:1f.7"]
"#);
    let words: Vec<u32> = c.domains[0].pci.iter().map(|&(w, _)| w).collect();
    assert_eq!(
        words,
        [pvabi::sbdf(0, 0, 6, 0), pvabi::sbdf(1, 0xff, 0x1f, 7)]
    );
    assert_eq!(pci::show_bdf(words[1]), "0001:ff:1f.7");
    for (value, want) in [
        (
            r#"["00:06.0"]"#,
            r#"field "pci": "00:06.0" is not a PCI function: expected SSSS:BB:DD.F in hexadecimal"#,
        ),
        (
            r#"["0000:00:6.0"]"#,
            r#""0000:00:6.0" is not a PCI function"#,
        ),
        (
            r#"["0000:00:20.0"]"#,
            r#""0000:00:20.0": device 0x20 is over 0x1f"#,
        ),
        (
            r#"["0000:00:06.8"]"#,
            r#""0000:00:06.8": function 8 is over 7"#,
        ),
        (
            r#"["0000:00:0g.0"]"#,
            r#""0000:00:0g.0" is not a PCI function"#,
        ),
        (
            r#"[6]"#,
            r#"field "pci": expected a string, found the integer 6"#,
        ),
        (
            r#""0000:00:06.0""#,
            r#"field "pci": expected an array of "SSSS:BB:DD.F" strings, found "0000:00:06.0""#,
        ),
        (
            r#"["0000:00:06.0", "0000:00:06.0"]"#,
            r#"field "pci": 0000:00:06.0 is named twice"#,
        ),
    ] {
        let e = one_err(&format!(
            "[[domain]]\nname = \"drv\"\nimage = \"hello\"\nmemory = 4\npci = {value}\n"
        ));
        assert!(
            e.starts_with("guests.toml:5:") && e.contains("domain \"drv\": ") && e.contains(want),
            "pci = {value}: {e}"
        );
    }
    let many: Vec<String> = (0..9).map(|d| format!("\"0000:00:{d:02x}.0\"")).collect();
    let e = one_err(&format!(
        "[[domain]]\nname = \"drv\"\nimage = \"hello\"\nmemory = 4\npci = [{}]\n",
        many.join(", ")
    ));
    assert!(e.contains("9 functions, at most 8"), "{e}");
}

#[test]
fn a_pci_function_goes_to_one_domain() {
    let e = one_err(
        r#"[[domain]]
name = "a"
image = "hello"
memory = 4
pci = ["0000:00:06.0"]

[[domain]]
name = "b"
image = "hello"
memory = 4
pci = ["0000:00:05.0", "0000:00:06.0"]
"#,
    );
    assert_eq!(
        e,
        r#"guests.toml:11:24: domain "b": field "pci": 0000:00:06.0 is already given to domain "a" at line 1"#
    );
}
