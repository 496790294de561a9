//! The markdown report: the machine, then one table per N with the floor beside every figure.

use std::fmt::Write as _;
use std::time::Duration;

use crate::agent::AgentRun;
use crate::cni::Cni;
use crate::floor::Floor;
use crate::machine::Machine;

/// Everything measured for one N.
#[derive(Debug, Clone)]
pub struct SizeResult {
    /// N.
    pub n: usize,
    /// Load average before and after this N's runs.
    pub load: (String, String),
    /// The raw rtnetlink floor.
    pub floor: Floor,
    /// The agent's path (`None`: skipped).
    pub agent: Option<AgentRun>,
    /// The CNI peer (`None`: skipped).
    pub cni: Option<Cni>,
}

/// The machine header.
pub fn machine(machine: &Machine, started: &str) -> String {
    format!(
        "Machine: {cpus} × {model}, {mem} MiB RAM, Linux {kernel}, {os}; commit {commit}; run started {started}.\n",
        cpus = machine.cpus,
        model = machine.cpu_model,
        mem = machine.memory_mib,
        kernel = machine.kernel,
        os = machine.os,
        commit = machine.commit,
    )
}

fn us(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v >= 1_000_000.0 {
        format!("{:.2} s", v / 1e6)
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn dur(d: Duration) -> String {
    us(d.as_secs_f64() * 1e6)
}

fn rate(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.0}/s")
    }
}

fn ratio(value: f64, floor: f64) -> String {
    let r = value / floor;
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "—".into()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One N's table and the targets it meets or misses.
pub fn size(result: &SizeResult) -> String {
    let n = result.n;
    let f = &result.floor;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### N = {n}\n\nLoad average (1/5/15 min) before {}, after {}.\n",
        result.load.0, result.load.1
    );
    let _ = writeln!(
        out,
        "| | raw rtnetlink floor (this run) | switchyard agent | agent ÷ floor | CNI `macvlan` | CNI ÷ floor |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let a = result.agent.as_ref();
    let c = result.cni.as_ref();
    let cni_note = c
        .filter(|c| c.pods != n)
        .map(|c| format!(" ({} pods)", c.pods))
        .unwrap_or_default();

    // Create, per link.
    let floor_create = f.create.per_op_us();
    let agent_link = a.map(|a| a.link_create.0 * 1e6 / a.link_create.1 as f64);
    let cni_add = c.map(|c| c.add.per_op_us());
    let _ = writeln!(
        out,
        "| create, per link | {} | {} kernel (`link_create_seconds` mean) | {} | {} per ADD{cni_note} | {} |",
        us(floor_create),
        agent_link.map_or("—".into(), us),
        agent_link.map_or("—".into(), |v| ratio(v, floor_create)),
        cni_add.map_or("—".into(), us),
        cni_add.map_or("—".into(), |v| ratio(v, floor_create)),
    );
    let path = f.agent_path.per_op_us();
    let _ = writeln!(
        out,
        "| create, per link, the agent's link code alone | {} | {} (`create_macvtap`, no API, 1 in flight: create with echo, alias, tap device) | {} | | |",
        us(floor_create),
        us(path),
        ratio(path, floor_create),
    );
    let agent_rate = a.map(|a| a.create.rate());
    let cni_rate = c.map(|c| c.add.rate());
    let _ = writeln!(
        out,
        "| create, rate | {} (1 in flight) | {} ports, API create → Ready | {} | {} pods (1 worker) | {} |",
        rate(f.create.rate()),
        agent_rate.map_or("—".into(), rate),
        agent_rate.map_or("—".into(), |v| ratio(v, f.create.rate())),
        cni_rate.map_or("—".into(), rate),
        cni_rate.map_or("—".into(), |v| ratio(v, f.create.rate())),
    );
    let _ = writeln!(
        out,
        "| create latency p50 / p99 | {} / {} | {} / {} (API create → watch shows Ready) | | {} / {} | |",
        us(f.create.quantile_us(0.5)),
        us(f.create.quantile_us(0.99)),
        a.map_or("—".into(), |a| us(a.create.quantile_us(0.5))),
        a.map_or("—".into(), |a| us(a.create.quantile_us(0.99))),
        c.map_or("—".into(), |c| us(c.add.quantile_us(0.5))),
        c.map_or("—".into(), |c| us(c.add.quantile_us(0.99))),
    );
    let floor_del = f.delete_each.per_op_us();
    let cni_del = c.map(|c| c.del.per_op_us());
    let _ = writeln!(
        out,
        "| delete one at a time, per link | {} ({}) | — | | {} per DEL ({}) | {} |",
        us(floor_del),
        rate(f.delete_each.rate()),
        cni_del.map_or("—".into(), us),
        c.map_or("—".into(), |c| rate(c.del.rate())),
        cni_del.map_or("—".into(), |v| ratio(v, floor_del)),
    );
    let agent_each = f.agent_delete_each.per_op_us();
    let _ = writeln!(
        out,
        "| delete one at a time, per link, the agent's link code alone | {} | {} (`delete_link` × {}: look-up, ownership check, delete) | {} | | |",
        us(floor_del),
        us(agent_each),
        f.agent_delete_each.ops,
        ratio(agent_each, floor_del),
    );
    let group = f.delete_group();
    let agent_teardown = a.map(|a| a.teardown_links.as_secs_f64() * 1e6 / n as f64);
    let _ = writeln!(
        out,
        "| delete as a group, per link | {} (re-tag {} + 1 group DELLINK {}) | {} (API delete → links gone) | {} | — | |",
        us(group.per_op_us()),
        us(f.retag.per_op_us()),
        dur(f.group_delete.total),
        agent_teardown.map_or("—".into(), us),
        agent_teardown.map_or("—".into(), |v| ratio(v, group.per_op_us())),
    );
    let agent_group = f.agent_delete_group.per_op_us();
    let _ = writeln!(
        out,
        "| delete as a group, per link, the agent's link code alone | {} | {} (`delete_links` of {}: dump, check, re-tag, 1 group DELLINK) | {} | | |",
        us(group.per_op_us()),
        us(agent_group),
        f.agent_delete_group.ops,
        ratio(agent_group, group.per_op_us()),
    );
    let _ = writeln!(
        out,
        "| teardown of all N | {} (group) | {} links gone ({} after the last delete call returned), {} objects gone; the delete calls alone: {} | {} | {} (DEL × {}) | |",
        dur(group.total),
        a.map_or("—".into(), |a| dur(a.teardown_links)),
        a.map_or("—".into(), |a| dur(a
            .teardown_links
            .saturating_sub(a.delete_calls))),
        a.map_or("—".into(), |a| dur(a.teardown_objects)),
        a.map_or("—".into(), |a| dur(a.delete_calls)),
        a.map_or("—".into(), |a| ratio(
            a.teardown_links.as_secs_f64(),
            group.total.as_secs_f64()
        )),
        c.map_or("—".into(), |c| dur(c.del.total)),
        c.map_or(0, |c| c.pods),
    );
    if let Some(a) = a {
        let _ = writeln!(
            out,
            "| restart recovery (SIGKILL with N Ready) | | {} spawn → `/readyz` 200; `recovery_seconds` {} | | | |",
            dur(a.restart_ready),
            us(a.recovery_seconds * 1e6),
        );
        let _ = writeln!(
            out,
            "| agent RSS with N ports | | {} (peak {}); {} after restart | | | |",
            mib(a.rss_kib),
            mib(a.hwm_kib),
            mib(a.rss_after_restart_kib),
        );
        let _ = writeln!(
            out,
            "| agent CPU per port | | {} create, {} teardown (user + sys) | | | |",
            us(a.create_cpu * 1e6 / n as f64),
            us(a.teardown_cpu * 1e6 / n as f64),
        );
    }
    out.push('\n');
    // Why the agent deletes in groups: the saving it buys in its own code, beside the floor's.
    let saving = agent_each / agent_group;
    let _ = writeln!(
        out,
        "- {} the agent's group deletion ≥ 3× cheaper per link than its single deletions: {} ({} against {}; on the floor {} against {})\n",
        if !saving.is_finite() {
            "for information:"
        } else if saving >= 3.0 {
            "met:"
        } else {
            "MISSED:"
        },
        if saving.is_finite() {
            format!("{saving:.1}×")
        } else {
            "—".into()
        },
        us(agent_group),
        us(agent_each),
        us(group.per_op_us()),
        us(floor_del),
    );
    if let Some(a) = a {
        let link = a.link_create.0 / a.link_create.1 as f64 * 1e6;
        let checks = [
            (
                format!(
                    "per-link kernel work ≤ 1.3× floor: {:.2}×",
                    link / floor_create
                ),
                Some(link / floor_create <= 1.3),
            ),
            (
                format!(
                    "the agent's link code alone ≤ 1.3× floor: {:.2}×",
                    f.agent_path.per_op_us() / floor_create
                ),
                Some(f.agent_path.per_op_us() / floor_create <= 1.3),
            ),
            (
                format!(
                    "teardown of {n} ports: {} (target < 1 s at 1,000)",
                    dur(a.teardown_links)
                ),
                (n <= 1000).then_some(a.teardown_links < Duration::from_secs(1)),
            ),
            (
                format!(
                    "restart recovery: {} to ready (target < 1 s at 4,000)",
                    dur(a.restart_ready)
                ),
                Some(a.restart_ready < Duration::from_secs(1)),
            ),
            (
                format!(
                    "agent RSS: {} (target < 30 MiB at 4,000)",
                    mib(a.rss_kib.max(a.rss_after_restart_kib))
                ),
                Some(a.rss_kib.max(a.rss_after_restart_kib) < 30 * 1024),
            ),
        ];
        for (text, met) in checks {
            let verdict = match met {
                Some(true) => "met:",
                Some(false) => "MISSED:",
                None => "for information:",
            };
            let _ = writeln!(out, "- {verdict} {text}");
        }
        out.push('\n');
    }
    out
}
