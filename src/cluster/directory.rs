//! The node directory: which node name listens at which address.
//!
//! The file format is the seed's `clustername.lua`: one `name = "ip:port"`
//! per line, `--` starts a comment, blank lines are ignored. Names are
//! identifiers (`[A-Za-z_][A-Za-z0-9_]*`); addresses are numeric IPv4
//! (`1.2.3.4:80`) or bracketed IPv6 (`[::1]:80`) with a nonzero port. A file
//! with any malformed line is refused as a whole, with every error reported
//! by file and line, so a bad reload changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// One malformed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// File name as given to `parse`.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// What replacing one directory by another changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Nodes that appear, with their address.
    pub added: Vec<(String, SocketAddr)>,
    /// Nodes whose address changed: (name, old, new).
    pub moved: Vec<(String, SocketAddr, SocketAddr)>,
    /// Nodes that disappear, with their old address.
    pub removed: Vec<(String, SocketAddr)>,
}

impl Changes {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.moved.is_empty() && self.removed.is_empty()
    }
}

/// Node name → listen address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    nodes: BTreeMap<String, SocketAddr>,
}

/// Checks a node name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// Parses `ip:port` (IPv6 in brackets); the port must not be 0.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not a numeric ip:port (IPv6 as [addr]:port)"))?;
    if addr.port() == 0 {
        return Err(format!("{text:?} has port 0"));
    }
    if addr.ip().is_unspecified() {
        return Err(format!(
            "{text:?} is a wildcard address, not one a peer can reach"
        ));
    }
    Ok(addr)
}

impl Directory {
    /// Parses a whole file. Either every line is valid, or every error is returned.
    pub fn parse(text: &str, file: &str) -> Result<Directory, Vec<LineError>> {
        let mut dir = Directory::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |message: String| LineError {
                file: file.to_string(),
                line: i + 1,
                message,
            };
            match parse_line(raw) {
                Ok(None) => {}
                Ok(Some((name, addr))) => {
                    if dir.nodes.insert(name.clone(), addr).is_some() {
                        errors.push(err(format!("node {name:?} is defined twice")));
                    }
                }
                Err(message) => errors.push(err(message)),
            }
        }
        if errors.is_empty() {
            Ok(dir)
        } else {
            Err(errors)
        }
    }

    /// Adds or moves one node.
    pub fn set(&mut self, name: &str, addr: SocketAddr) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!("{name:?} is not a valid node name"));
        }
        self.nodes.insert(name.to_string(), addr);
        Ok(())
    }

    /// Removes a node; false if it was not there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.nodes.remove(name).is_some()
    }

    /// Every node and its address.
    pub fn entries(&self) -> Vec<(String, SocketAddr)> {
        self.nodes.iter().map(|(n, a)| (n.clone(), *a)).collect()
    }

    /// The address of `name`.
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.nodes.get(name).copied()
    }

    /// The name listening at `addr`, if any.
    pub fn name_of(&self, addr: &SocketAddr) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, a)| *a == addr)
            .map(|(n, _)| n.as_str())
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// What changes when `self` is replaced by `next` (a hot reload).
    pub fn diff(&self, next: &Directory) -> Changes {
        let mut c = Changes::default();
        for (name, &addr) in &next.nodes {
            match self.nodes.get(name) {
                None => c.added.push((name.clone(), addr)),
                Some(&old) if old != addr => c.moved.push((name.clone(), old, addr)),
                Some(_) => {}
            }
        }
        for (name, &addr) in &self.nodes {
            if !next.nodes.contains_key(name) {
                c.removed.push((name.clone(), addr));
            }
        }
        c
    }
}

/// One line: `Ok(None)` for blank or comment-only lines.
fn parse_line(raw: &str) -> Result<Option<(String, SocketAddr)>, String> {
    // `--` outside the quoted value starts a comment.
    let mut in_quotes = false;
    let mut cut = raw.len();
    let bytes = raw.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' => in_quotes = !in_quotes,
            b'-' if !in_quotes && bytes.get(i + 1) == Some(&b'-') => {
                cut = i;
                break;
            }
            _ => {}
        }
    }
    let line = raw[..cut].trim();
    if line.is_empty() {
        return Ok(None);
    }
    let Some((name, value)) = line.split_once('=') else {
        return Err(format!("expected name = \"ip:port\", found {line:?}"));
    };
    let name = name.trim();
    if !valid_name(name) {
        return Err(format!("{name:?} is not a valid node name"));
    }
    let value = value.trim().trim_end_matches([',', ';']).trim_end();
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return Err(format!(
            "the address of {name:?} must be a quoted \"ip:port\", found {value:?}"
        ));
    };
    let addr = parse_addr(inner)?;
    Ok(Some((name.to_string(), addr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_seed_format() {
        let text = "-- cluster nodes\n\
                    battle_1    =   \"192.168.10.1:8001\"\n\
                    game_1      =   \"192.168.10.1:8002\"   -- the game server\n\
                    \n\
                    v6_node = \"[::1]:9000\",\n";
        let d = Directory::parse(text, "clustername.lua").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.get("battle_1"), Some(a("192.168.10.1:8001")));
        assert_eq!(d.get("game_1"), Some(a("192.168.10.1:8002")));
        assert_eq!(d.get("v6_node"), Some(a("[::1]:9000")));
        assert_eq!(d.name_of(&a("192.168.10.1:8002")), Some("game_1"));
    }

    #[test]
    fn every_malformed_line_is_reported_with_its_number_and_nothing_is_taken() {
        let text = "ok = \"127.0.0.1:1\"\n\
                    1bad = \"127.0.0.1:2\"\n\
                    noquote = 127.0.0.1:3\n\
                    name = \"localhost:4\"\n\
                    zero = \"127.0.0.1:0\"\n\
                    wild = \"0.0.0.0:5\"\n\
                    just words\n\
                    ok = \"127.0.0.1:6\"\n";
        let errs = Directory::parse(text, "c.lua").unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8]);
        assert!(errs.iter().all(|e| e.file == "c.lua"));
        assert!(errs[6].message.contains("twice"), "{}", errs[6]);
        assert_eq!(errs[0].to_string(), format!("c.lua:2: {}", errs[0].message));
    }

    #[test]
    fn comment_marks_inside_quotes_are_not_comments() {
        // Not a valid address either way, but the error must name the whole value.
        let errs = Directory::parse("n = \"1.2.3.4--5\"", "f").unwrap_err();
        assert!(errs[0].message.contains("1.2.3.4--5"), "{}", errs[0]);
    }

    #[test]
    fn reload_diff_names_added_moved_and_removed_nodes() {
        let old = Directory::parse(
            "a = \"127.0.0.1:1\"\nb = \"127.0.0.1:2\"\nc = \"127.0.0.1:3\"",
            "f",
        )
        .unwrap();
        let new = Directory::parse(
            "a = \"127.0.0.1:1\"\nb = \"127.0.0.1:20\"\nd = \"127.0.0.1:4\"",
            "f",
        )
        .unwrap();
        let c = old.diff(&new);
        assert_eq!(c.added, vec![("d".to_string(), a("127.0.0.1:4"))]);
        assert_eq!(
            c.moved,
            vec![("b".to_string(), a("127.0.0.1:2"), a("127.0.0.1:20"))]
        );
        assert_eq!(c.removed, vec![("c".to_string(), a("127.0.0.1:3"))]);
        assert!(old.diff(&old).is_empty());
    }

    #[test]
    fn set_and_remove() {
        let mut d = Directory::default();
        assert!(d.set("x", a("127.0.0.1:1")).is_ok());
        assert!(d.set("bad name", a("127.0.0.1:1")).is_err());
        assert!(d.remove("x"));
        assert!(!d.remove("x"));
        assert!(d.is_empty());
    }
}
