//! Generated databases of any size, for benchmarks and scale tests. The
//! output is ordinary DB-repository YAML, so it exercises the real loader.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// `n` valid machines in files of `per_file`, keyed by repository path.
/// Clusters of 10 nodes (one control plane); addresses from 198.18.0.0/15.
pub fn database(n: usize, per_file: usize) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut text = String::from("machines:\n");
    for i in 0..n {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i as u32);
        let b = (i as u32).to_be_bytes();
        // Half the machines are cluster nodes: clusters of 10, node 0 the control plane.
        let use_ = match i % 20 {
            0..=9 => format!(
                "\n      cluster: {{ name: c{}, role: {} }}",
                i / 20,
                if i % 20 == 0 {
                    "control-plane"
                } else {
                    "worker"
                }
            ),
            10..=13 => " { development: server }".into(),
            14..=15 => " games".into(),
            16..=18 => " { device: sensor }".into(),
            _ => " discover".into(),
        };
        text.push_str(&format!(
            "  - name: m{i:06}\n    ip: {ip}\n    mac: 02:00:{:02x}:{:02x}:{:02x}:{:02x}\n    use:{use_}\n    labels: {{ rack: r{} }}\n",
            b[0], b[1], b[2], b[3], i % 50
        ));
        if (i + 1) % per_file == 0 || i + 1 == n {
            files.insert(
                format!("machines/gen-{:05}.yaml", i / per_file),
                std::mem::replace(&mut text, String::from("machines:\n")),
            );
        }
    }
    files
}

pub fn source_files(files: &BTreeMap<String, String>) -> Vec<crate::db::SourceFile> {
    files
        .iter()
        .map(|(p, t)| crate::db::SourceFile {
            path: p.clone(),
            text: t.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_database_is_valid() {
        let files = super::database(1000, 100);
        assert_eq!(files.len(), 10);
        let snap = crate::db::validate(&super::source_files(&files), "gen").unwrap();
        assert_eq!(snap.machines.len(), 1000);
        assert_eq!(snap.cluster_names().count(), 50);
    }
}
