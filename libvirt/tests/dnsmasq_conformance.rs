//! The dnsmasq generator against libvirt's own expected output (see `dnsmasq_golden` for
//! what is compared). Prints one tally line and fails if any count falls short.

mod dnsmasq_golden;

#[test]
fn dnsmasq_files_equal_libvirts() {
    let tally = dnsmasq_golden::compare_corpus();
    eprintln!(
        "libvirt generated: dnsmasq conf {}/{}, hostsfile {}/{}",
        tally.conf.0, tally.conf.1, tally.hostsfile.0, tally.hostsfile.1
    );
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n\n"));
    assert_eq!(
        (tally.conf, tally.hostsfile),
        ((27, 27), (14, 14)),
        "every corpus network is compared"
    );
}
