//! The generated firewall against a real nftables, inside network namespaces these tests
//! create and remove (run as root; nftables comes from scripts/install-deps.sh). Every `nft`
//! runs through `ip netns exec <sandbox>`, which has a ruleset of its own: the host's is never
//! read or touched. The bridges the rules name are created in the sandbox; forward devices
//! (`oifname`) need not exist.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command as Process, Stdio};

use switchyard_libvirt::firewall::nftables::{network_commands, setup_commands};
use switchyard_libvirt::firewall::removal::{Applied, removal_commands};
use switchyard_libvirt::firewall::script::{remove_table_script, table_script};
use switchyard_libvirt::firewall::{Command, Program, SWITCHYARD_TABLE};
use switchyard_libvirt::network_from_xml;
use switchyard_tests::netns::Sandbox;

/// Corpus networks and the bridge each gets in the sandbox (libvirt's all use virbr0).
const NETWORKS: [(&str, &str); 4] = [
    ("nat-port-range-ipv6", "virbr0"),
    ("forward-dev", "virbr1"),
    ("route-default", "virbr2"),
    ("isolated", "virbr3"),
];

fn network_rules(name: &str, bridge: &str) -> Vec<Command> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/libvirt/networkxml2firewalldata")
        .join(format!("{name}.xml"));
    let xml = std::fs::read_to_string(&path).unwrap();
    let network = network_from_xml(&xml).unwrap();
    network_commands(&network.spec, bridge, SWITCHYARD_TABLE).unwrap()
}

fn sandbox_with_bridges() -> Sandbox {
    Sandbox::sweep_stale().expect("sweep stale sandboxes");
    let sandbox = Sandbox::new("nft").expect("create a sandbox namespace");
    for (_, bridge) in NETWORKS {
        sandbox.add_bridge(bridge).expect("add a bridge");
    }
    sandbox
}

/// Runs `nft <args>` in the sandbox with `stdin`; its stdout, or the error text.
fn nft(sandbox: &Sandbox, args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = Process::new("ip")
        .args(["netns", "exec", sandbox.name(), "nft"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft (is nftables installed? scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(format!(
            "nft {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A table's chains as `nft list table` prints them: chain → rules, top first, with the
/// chain's `type ... hook` line left out.
fn listed_chains(listing: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in listing.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("chain ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            current = Some(name.to_string());
            chains.insert(name.to_string(), Vec::new());
        } else if line == "}" {
            current = None;
        } else if let Some(chain) = &current
            && !line.is_empty()
            && !line.starts_with("type ")
        {
            chains.get_mut(chain).unwrap().push(line.to_string());
        }
    }
    chains
}

/// What `nft list table <family> <table>` must show after the script: each chain the
/// script adds, holding its inserted rules in reverse order (an insert goes to the top), as
/// nft prints a rule back (fresh counters, device names quoted, conntrack states sorted,
/// a single address without its /32).
fn expected_chains(script: &str, family: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let add_chain = format!("add chain {family} {SWITCHYARD_TABLE} ");
    let insert = format!("insert rule {family} {SWITCHYARD_TABLE} ");
    for line in script.lines() {
        if let Some(rest) = line.strip_prefix(&add_chain) {
            let name = rest.split(' ').next().unwrap();
            chains.insert(name.to_string(), Vec::new());
        } else if let Some(rest) = line.strip_prefix(&insert) {
            let (chain, rule) = rest.split_once(' ').unwrap();
            let printed = rule
                .replace("counter", "counter packets 0 bytes 0")
                .replace("related,established", "established,related")
                .replace("255.255.255.255/32", "255.255.255.255");
            chains.get_mut(chain).unwrap().insert(0, printed);
        }
    }
    chains
}

fn listed(sandbox: &Sandbox, family: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    nft(sandbox, &["list", "table", family, SWITCHYARD_TABLE], "").map(|l| listed_chains(&l))
}

#[test]
fn the_table_script_loads_atomically_and_again_without_duplicates() {
    let sandbox = sandbox_with_bridges();
    let networks: Vec<Vec<Command>> = NETWORKS
        .iter()
        .map(|(name, bridge)| network_rules(name, bridge))
        .collect();
    let script = table_script(SWITCHYARD_TABLE, &networks).unwrap();

    nft(&sandbox, &["-f", "-"], &script).unwrap();
    // ip: four networks' rejects, two IPv4 subnets of nat-port-range-ipv6 and one each of
    // forward-dev and route-default; ip6: two networks with IPv6, one subnet masqueraded.
    for (family, guest_output) in [("ip", 8), ("ip6", 3)] {
        let want = expected_chains(&script, family);
        assert_eq!(listed(&sandbox, family).unwrap(), want, "{family}");
        assert_eq!(
            want["guest_output"].len(),
            guest_output,
            "{family}: {want:?}"
        );
    }
    let ip = listed(&sandbox, "ip").unwrap();
    assert_eq!(
        ip["guest_nat"].first().map(String::as_str),
        Some(
            "oifname \"enp0s7\" ip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 counter packets 0 bytes 0 return"
        ),
        "the last network's multicast exemption is on top"
    );

    // A second load (an agent restart) leaves exactly the same rules.
    nft(&sandbox, &["-f", "-"], &script).unwrap();
    for family in ["ip", "ip6"] {
        assert_eq!(
            listed(&sandbox, family).unwrap(),
            expected_chains(&script, family)
        );
    }

    // Removing a network is loading the others' script.
    let fewer = table_script(SWITCHYARD_TABLE, &networks[1..]).unwrap();
    nft(&sandbox, &["-f", "-"], &fewer).unwrap();
    let ip = listed(&sandbox, "ip").unwrap();
    assert_eq!(ip, expected_chains(&fewer, "ip"));
    assert!(
        ip.values().flatten().all(|rule| !rule.contains("virbr0")),
        "{ip:?}"
    );

    // A script that fails part-way changes nothing.
    let broken = format!("{script}insert rule ip {SWITCHYARD_TABLE} no_such_chain counter\n");
    assert!(nft(&sandbox, &["-f", "-"], &broken).is_err());
    assert_eq!(
        listed(&sandbox, "ip").unwrap(),
        expected_chains(&fewer, "ip")
    );

    let remove = remove_table_script(SWITCHYARD_TABLE).unwrap();
    nft(&sandbox, &["-f", "-"], &remove).unwrap();
    assert_eq!(nft(&sandbox, &["list", "tables"], "").unwrap(), "");
    // Removing what is not there is no error either.
    nft(&sandbox, &["-f", "-"], &remove).unwrap();
}

/// libvirt's own way, command by command: the set-up, one network's rules with `nft -ae`,
/// then the removal built from the echoed handles leaves the set-up alone, as before.
#[test]
fn removal_by_echoed_handles_leaves_only_the_setup() {
    let sandbox = sandbox_with_bridges();
    let run = |command: &Command| -> String {
        let argv = command.argv();
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        nft(&sandbox, &args, "").unwrap()
    };
    for command in setup_commands(SWITCHYARD_TABLE).unwrap() {
        // `list table` fails while the table is missing; libvirt reads that as empty.
        if command.is_query() {
            continue;
        }
        run(&command);
    }
    let setup_only = (
        listed(&sandbox, "ip").unwrap(),
        listed(&sandbox, "ip6").unwrap(),
    );

    // The tc checksum fix is not nft's; the kernel here lacks act_csum, and the node agent
    // applies it on its own, best effort.
    let commands: Vec<Command> = network_rules(NETWORKS[0].0, NETWORKS[0].1)
        .into_iter()
        .filter(|c| c.program == Program::Nft)
        .collect();
    let outputs: Vec<String> = commands.iter().map(run).collect();
    let applied: Vec<Applied> = commands
        .iter()
        .zip(&outputs)
        .map(|(command, output)| Applied { command, output })
        .collect();
    let ip = listed(&sandbox, "ip").unwrap();
    assert_eq!(
        ip["guest_nat"].len(),
        10,
        "two subnets' masquerade rules: {ip:?}"
    );

    let removal = removal_commands(&applied).unwrap();
    assert_eq!(removal.len(), commands.len());
    for command in &removal {
        assert!(command.args[0] == "delete", "{command}");
        run(command);
    }
    assert_eq!(
        (
            listed(&sandbox, "ip").unwrap(),
            listed(&sandbox, "ip6").unwrap()
        ),
        setup_only
    );
}
