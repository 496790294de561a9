//! Reading counters from a Prometheus text exposition (the agents', the controller's and the
//! apiserver's `/metrics`), to count the work a test caused.

/// The sum of every sample of metric `name` whose labels contain all of `labels` (each
/// `key="value"`); 0 when there is none. Samples of other metrics sharing the prefix (e.g.
/// `name_bucket`) are not counted.
pub fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|wanted| label_text.contains(wanted)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The HTTP body of a raw `HTTP/1.x` response (what [`crate::nodes::SimulatedNode::http_get`]
/// returns), or the whole text when it has no header.
pub fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map_or(response, |(_, body)| body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_samples_of_one_metric_with_the_wanted_labels() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total{kind=\"Node\"} 2\n\
                    a_total{kind=\"NetworkPort\"} 3\na_total_bucket{le=\"1\"} 9\nb_total 7\n";
        assert_eq!(metric_sum(text, "a_total", &[]), 5.0);
        assert_eq!(metric_sum(text, "a_total", &["kind=\"Node\""]), 2.0);
        assert_eq!(metric_sum(text, "b_total", &[]), 7.0);
        assert_eq!(metric_sum(text, "c_total", &[]), 0.0);
    }
}
