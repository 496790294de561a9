//! The attribute payloads `tc` (iproute2 6.1) sends for libvirt's command lines, for the
//! parts netlink-packet-route 0.34 does not model: HTB (`TCA_HTB_*`), sfq's flat
//! `tc_sfq_qopt`, the fw classifier's `TCA_FW_CLASSID` and the police action (`TCA_POLICE_*`).
//! Struct layouts are the kernel's uapi (`linux/pkt_sched.h`, `linux/pkt_cls.h`), in host
//! byte order as netlink carries them.
//!
//! Time values are psched ticks of 64 ns (the kernel's `PSCHED_SHIFT`), computed the way
//! tc's `tc_calc_xmittime` does from `/proc/net/psched` on a high-resolution-timer kernel:
//! whole microseconds first, then 15.625 ticks per microsecond.

use super::{HtbClass, POLICE_MTU, Police, SFQ_PERTURB_SECONDS};

pub const TCA_HTB_PARMS: u16 = 1;
pub const TCA_HTB_INIT: u16 = 2;
pub const TCA_HTB_CTAB: u16 = 3;
pub const TCA_HTB_RTAB: u16 = 4;
pub const TCA_HTB_RATE64: u16 = 6;
pub const TCA_HTB_CEIL64: u16 = 7;
pub const TCA_FW_CLASSID: u16 = 1;
pub const TCA_POLICE_TBF: u16 = 1;
pub const TCA_POLICE_RATE: u16 = 2;
pub const TCA_POLICE_RATE64: u16 = 8;

/// `TC_POLICE_SHOT`: `drop`.
const TC_POLICE_SHOT: i32 = 2;
/// `TC_LINKLAYER_ETHERNET`, tc's default for htb and police.
const LINKLAYER_ETHERNET: u8 = 1;
/// tc's `mtu` default for an HTB class (q_htb.c), which also sizes its rate tables.
const HTB_MTU: u32 = 1600;
/// tc's `get_hz()`: the psched clock resolution, 1 ns, as 1e9 per second.
const PSCHED_HZ: u64 = 1_000_000_000;
const TICKS_PER_USEC: f64 = 1000.0 / 64.0;
/// `TC_HTB_PROTOVER` and tc's `r2q` default.
const HTB_VERSION: u32 = 3;
const HTB_RATE2QUANTUM: u32 = 10;

/// tc's `tc_calc_xmittime`: how long `size` bytes take at `rate` bytes/s, in ticks.
pub fn xmit_ticks(rate: u64, size: u32) -> u32 {
    let usec = (1_000_000.0 * (f64::from(size) / rate as f64)) as u32;
    (f64::from(usec) * TICKS_PER_USEC) as u32
}

/// tc's cell size for a rate table covering `mtu` bytes in 256 cells.
fn cell_log(mtu: u32) -> u8 {
    let mut log = 0;
    while (mtu >> log) > 255 {
        log += 1;
    }
    log
}

/// `struct tc_ratespec` as tc's `tc_calc_rtable_64` leaves it, and the rate table beside it.
fn ratespec_and_table(rate: u64, mtu: u32) -> ([u8; 12], Vec<u8>) {
    let log = cell_log(mtu);
    let mut spec = [0u8; 12];
    spec[0] = log;
    spec[1] = LINKLAYER_ETHERNET;
    // overhead 0, cell_align -1, mpu 0
    spec[4..6].copy_from_slice(&(-1i16).to_ne_bytes());
    spec[8..12].copy_from_slice(&clamp_u32(rate).to_ne_bytes());
    let table = (0..256u32)
        .flat_map(|cell| xmit_ticks(rate, (cell + 1) << log).to_ne_bytes())
        .collect();
    (spec, table)
}

/// Rates above 32 bits go as all-ones in the struct and in full in a `*_RATE64` attribute.
fn clamp_u32(rate: u64) -> u32 {
    u32::try_from(rate).unwrap_or(u32::MAX)
}

/// The root qdisc's nested options: `htb default <class minor>`.
pub fn htb_qdisc_options(default_minor: u32) -> Vec<(u16, Vec<u8>)> {
    // struct tc_htb_glob { version, rate2quantum, defcls, debug, direct_pkts }
    let glob = [HTB_VERSION, HTB_RATE2QUANTUM, default_minor, 0, 0];
    vec![(TCA_HTB_INIT, words(&glob))]
}

/// The class's nested options, as `htb rate R [ceil C] [burst B] quantum Q`.
pub fn htb_class_options(class: &HtbClass) -> Vec<(u16, Vec<u8>)> {
    let rate = class.rate;
    let ceil = class.ceil.unwrap_or(rate);
    let buffer = class.burst.unwrap_or_else(|| {
        u32::try_from(rate / PSCHED_HZ)
            .unwrap_or(u32::MAX)
            .saturating_add(HTB_MTU)
    });
    let cbuffer = u32::try_from(ceil / PSCHED_HZ)
        .unwrap_or(u32::MAX)
        .saturating_add(HTB_MTU);
    let (rate_spec, rtab) = ratespec_and_table(rate, HTB_MTU);
    let (ceil_spec, ctab) = ratespec_and_table(ceil, HTB_MTU);
    // struct tc_htb_opt { rate, ceil, buffer, cbuffer, quantum, level, prio }
    let mut parms = Vec::with_capacity(44);
    parms.extend_from_slice(&rate_spec);
    parms.extend_from_slice(&ceil_spec);
    parms.extend(words(&[
        xmit_ticks(rate, buffer),
        xmit_ticks(ceil, cbuffer),
        class.quantum,
        0,
        0,
    ]));
    let mut options = Vec::new();
    if rate > u64::from(u32::MAX) {
        options.push((TCA_HTB_RATE64, rate.to_ne_bytes().to_vec()));
    }
    if ceil > u64::from(u32::MAX) {
        options.push((TCA_HTB_CEIL64, ceil.to_ne_bytes().to_vec()));
    }
    options.push((TCA_HTB_PARMS, parms));
    options.push((TCA_HTB_RTAB, rtab));
    options.push((TCA_HTB_CTAB, ctab));
    options
}

/// sfq's options are one flat `struct tc_sfq_qopt`, not nested attributes:
/// `{ quantum, perturb_period, limit, divisor, flows }`, all but the perturbation defaulted.
pub fn sfq_options() -> Vec<u8> {
    let mut opt = words(&[0]);
    opt.extend_from_slice(&SFQ_PERTURB_SECONDS.to_ne_bytes());
    opt.extend(words(&[0, 0, 0]));
    opt
}

/// The fw classifier's nested options: `flowid <classid>`.
pub fn fw_options(classid: u32) -> Vec<(u16, Vec<u8>)> {
    vec![(TCA_FW_CLASSID, classid.to_ne_bytes().to_vec())]
}

/// The police action's nested attributes, the payload of `TCA_U32_POLICE`:
/// `police rate R burst B mtu 64kb drop`.
pub fn police_attributes(police: &Police) -> Vec<u8> {
    let (rate_spec, rtab) = ratespec_and_table(police.rate, POLICE_MTU);
    // struct tc_police { index, action, limit, burst, mtu, rate, peakrate, refcnt, bindcnt, capab }
    let mut tbf = words(&[0]);
    tbf.extend_from_slice(&TC_POLICE_SHOT.to_ne_bytes());
    tbf.extend(words(&[
        0,
        xmit_ticks(police.rate, police.burst),
        POLICE_MTU,
    ]));
    tbf.extend_from_slice(&rate_spec);
    tbf.extend_from_slice(&[0u8; 12]);
    tbf.extend(words(&[0, 0, 0]));
    let mut attributes = nla(TCA_POLICE_TBF, &tbf);
    attributes.extend(nla(TCA_POLICE_RATE, &rtab));
    if police.rate > u64::from(u32::MAX) {
        attributes.extend(nla(TCA_POLICE_RATE64, &police.rate.to_ne_bytes()));
    }
    attributes
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// One netlink attribute: length, type, payload, padded to 4 bytes.
fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + payload.len()).expect("tc attributes are far below 64 KiB");
    let mut out = Vec::with_capacity((payload.len() + 7) & !3);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize((out.len() + 3) & !3, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn ticks_are_whole_microseconds_times_fifteen_and_five_eighths() {
        // burst 4kb at 1kbps: 4.096 s.
        assert_eq!(xmit_ticks(1000, 4096), 64_000_000);
        // 1600 bytes at 2000 B/s: 0.8 s.
        assert_eq!(xmit_ticks(2000, 1600), 12_500_000);
        // 0.999999 ms truncates to 999 us before scaling.
        assert_eq!(xmit_ticks(4_294_967_295_000, 4_294_966_272), 15_609);
    }

    #[test]
    fn an_htb_class_carries_libvirts_rate_ceil_burst_and_quantum() {
        let options = htb_class_options(&HtbClass {
            rate: 1000,
            ceil: Some(2000),
            burst: Some(4096),
            quantum: 1,
        });
        let kinds: Vec<u16> = options.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, [TCA_HTB_PARMS, TCA_HTB_RTAB, TCA_HTB_CTAB]);
        let parms = &options[0].1;
        assert_eq!(parms.len(), 44);
        assert_eq!(parms[0], 3, "cell_log for tc's 1600-byte mtu");
        assert_eq!(u32_at(parms, 8), 1000, "rate");
        assert_eq!(u32_at(parms, 20), 2000, "ceil");
        assert_eq!(
            u32_at(parms, 24),
            64_000_000,
            "buffer: burst 4kb at the rate"
        );
        assert_eq!(
            u32_at(parms, 28),
            12_500_000,
            "cbuffer: tc's 1600 bytes at the ceil"
        );
        assert_eq!(u32_at(parms, 32), 1, "quantum");
        assert_eq!(options[1].1.len(), 1024);
    }

    #[test]
    fn rates_above_32_bits_go_in_their_own_attributes() {
        let rate = 4_294_967_295_000;
        let options = htb_class_options(&HtbClass {
            rate,
            ceil: None,
            burst: None,
            quantum: 366_503_875,
        });
        assert_eq!(options[0], (TCA_HTB_RATE64, rate.to_ne_bytes().to_vec()));
        assert_eq!(options[1], (TCA_HTB_CEIL64, rate.to_ne_bytes().to_vec()));
        assert_eq!(u32_at(&options[2].1, 8), u32::MAX);

        let police = police_attributes(&Police {
            rate,
            burst: 4_294_966_272,
        });
        let rate64_at = police.len() - 12;
        assert_eq!(
            u16::from_ne_bytes([police[rate64_at + 2], police[rate64_at + 3]]),
            TCA_POLICE_RATE64
        );
    }

    #[test]
    fn police_drops_beyond_rate_and_burst_with_a_64k_mtu() {
        let police = police_attributes(&Police {
            rate: 5000,
            burst: 7168,
        });
        // TBF attribute header, then struct tc_police.
        assert_eq!(u16::from_ne_bytes([police[0], police[1]]), 4 + 56);
        let tbf = &police[4..60];
        assert_eq!(u32_at(tbf, 4), TC_POLICE_SHOT as u32);
        assert_eq!(u32_at(tbf, 12), xmit_ticks(5000, 7168));
        assert_eq!(u32_at(tbf, 16), 65536);
        assert_eq!(tbf[20], 9, "cell_log for a 64 KiB mtu");
        assert_eq!(u32_at(tbf, 28), 5000);
        assert_eq!(police.len(), 60 + 4 + 1024, "TBF and RATE, no RATE64");
    }

    #[test]
    fn sfq_is_one_flat_struct_with_a_ten_second_perturbation() {
        let opt = sfq_options();
        assert_eq!(opt.len(), 20);
        assert_eq!(u32_at(&opt, 4), 10);
    }
}
