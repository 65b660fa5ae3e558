//! The BIRD 2 driver: renders the fragment this node's `bird.conf` includes, applies it
//! with `birdc configure`, and reads the protocols' state with `birdc show protocols`.
//!
//! The fragment holds one static protocol per address family (`<stem>4`, `<stem>6`), each
//! with a host route per service address pointing at the service link (see
//! `fulcrum_vip::ServiceLink`). Announcing is `disabled no`, withdrawing `disabled yes`; the
//! operator's BGP protocols export them (`export where proto ~ "<stem>*"`). Because the
//! routes need the link, BIRD withdraws them by itself when the process dies.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Upper bound for one `birdc` call: BIRD answers in milliseconds; a hung daemon must not
/// hang the announcer.
const BIRDC_TIMEOUT: Duration = Duration::from_secs(3);

/// Why BIRD could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("cannot write the BIRD fragment {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {birdc}: {source}")]
    Spawn {
        birdc: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`birdc {command}` did not answer within {BIRDC_TIMEOUT:?}")]
    Timeout { command: String },
    #[error("`birdc {command}` failed: {output}")]
    Refused { command: String, output: String },
}

/// One protocol line of `birdc show protocols`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Protocol {
    pub name: String,
    pub proto: String,
    pub state: String,
    pub info: String,
    /// A BGP session that exchanges routes (`up`, `Established`); any other protocol: `up`.
    pub established: bool,
}

/// How this node drives its BIRD.
#[derive(Debug, Clone)]
pub struct Bird {
    pub birdc: PathBuf,
    pub socket: PathBuf,
    pub fragment: PathBuf,
    /// Static protocols are `<stem>4` / `<stem>6`.
    pub stem: String,
    /// The service link the routes point at.
    pub link: String,
    pub prefixes: Vec<(IpAddr, u8)>,
}

impl Bird {
    /// The fragment for `announce`.
    pub fn render(&self, announce: bool) -> String {
        let mut out = format!(
            "# Written by fulcrum ([bgp] fragment); rewritten on every change, do not edit.\n# {}\n",
            if announce { "announcing" } else { "withdrawn" }
        );
        for (family, v4) in [("ipv4", true), ("ipv6", false)] {
            let routes: Vec<String> = self
                .prefixes
                .iter()
                .filter(|(a, _)| a.is_ipv4() == v4)
                .map(|(a, p)| format!("  route {a}/{p} via \"{}\";\n", self.link))
                .collect();
            if routes.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "protocol static {}{} {{\n  disabled {};\n  {family};\n{}}}\n",
                self.stem,
                if v4 { '4' } else { '6' },
                if announce { "no" } else { "yes" },
                routes.concat()
            ));
        }
        out
    }

    /// Writes the fragment for `announce` (atomically) and has BIRD reload its config.
    pub async fn apply(&self, announce: bool) -> Result<(), BirdError> {
        write_atomic(&self.fragment, &self.render(announce))?;
        let out = self.birdc(&["configure"]).await?;
        if configured(&out) {
            Ok(())
        } else {
            Err(BirdError::Refused {
                command: "configure".into(),
                output: out.trim().to_string(),
            })
        }
    }

    /// Every protocol BIRD runs.
    pub async fn protocols(&self) -> Result<Vec<Protocol>, BirdError> {
        Ok(parse_protocols(&self.birdc(&["show", "protocols"]).await?))
    }

    async fn birdc(&self, args: &[&str]) -> Result<String, BirdError> {
        let command = args.join(" ");
        let run = tokio::process::Command::new(&self.birdc)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(BIRDC_TIMEOUT, run)
            .await
            .map_err(|_| BirdError::Timeout {
                command: command.clone(),
            })?
            .map_err(|source| BirdError::Spawn {
                birdc: self.birdc.clone(),
                source,
            })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() || text.contains("Unable to connect") {
            return Err(BirdError::Refused {
                command,
                output: text.trim().to_string(),
            });
        }
        Ok(text)
    }
}

/// Whether `birdc configure` output says the new config is (being) taken.
fn configured(out: &str) -> bool {
    out.lines().any(|l| {
        let l = l.trim();
        l == "Reconfigured"
            || l.starts_with("Reconfiguration in progress")
            || l.starts_with("Reconfiguration already in progress")
    })
}

fn write_atomic(path: &Path, text: &str) -> Result<(), BirdError> {
    let err = |source| BirdError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Parses `birdc show protocols`: a header line `Name Proto Table State Since Info`, then
/// one line per protocol; `Since` is one or two words (time, or date and time).
pub fn parse_protocols(out: &str) -> Vec<Protocol> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("Name"));
    lines.next();
    lines
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 5 {
                return None;
            }
            let mut rest = &words[5..];
            if rest.first().is_some_and(|w| looks_like_time(w)) {
                rest = &rest[1..];
            }
            let info = rest.join(" ");
            let up = words[3] == "up";
            Some(Protocol {
                established: up && (words[1] != "BGP" || info.starts_with("Established")),
                name: words[0].to_string(),
                proto: words[1].to_string(),
                state: words[3].to_string(),
                info,
            })
        })
        .collect()
}

fn looks_like_time(w: &str) -> bool {
    w.len() >= 5
        && w.as_bytes()[2] == b':'
        && w.chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bird() -> Bird {
        Bird {
            birdc: "birdc".into(),
            socket: "/run/bird/bird.ctl".into(),
            fragment: "/tmp/f.conf".into(),
            stem: "fulcrum".into(),
            link: "fulcrum0".into(),
            prefixes: vec![
                ("10.77.9.1".parse().unwrap(), 32),
                ("fd77::1".parse().unwrap(), 128),
                ("10.77.9.2".parse().unwrap(), 32),
            ],
        }
    }

    #[test]
    fn fragment_has_one_static_protocol_per_family_and_the_switch() {
        let on = bird().render(true);
        assert!(on.contains("protocol static fulcrum4 {\n  disabled no;\n  ipv4;\n  route 10.77.9.1/32 via \"fulcrum0\";\n  route 10.77.9.2/32 via \"fulcrum0\";\n}"), "{on}");
        assert!(on.contains("protocol static fulcrum6 {\n  disabled no;\n  ipv6;\n  route fd77::1/128 via \"fulcrum0\";\n}"), "{on}");
        let off = bird().render(false);
        assert_eq!(off.matches("disabled yes;").count(), 2, "{off}");
        let mut v4 = bird();
        v4.prefixes.retain(|(a, _)| a.is_ipv4());
        assert!(!v4.render(true).contains("fulcrum6"));
    }

    #[test]
    fn show_protocols_is_parsed_with_either_time_format() {
        let out = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n\
device1    Device     ---        up     10:08:16.115  \n\
fulcrum4   Static     master4    down   10:08:16.115  \n\
uplink     BGP        ---        up     10:08:17.002  Established   \n\
backup     BGP        ---        start  2026-12-07 10:08:16  Active        Socket: Connection refused\n";
        let p = parse_protocols(out);
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].state, "down");
        assert!(p[2].established);
        assert_eq!(p[3].info, "Active Socket: Connection refused");
        assert!(!p[3].established);
    }

    #[test]
    fn configure_answers() {
        assert!(configured(
            "BIRD 2.0.12 ready.\nReading configuration from /etc/bird/bird.conf\nReconfigured\n"
        ));
        assert!(!configured("BIRD 2.0.12 ready.\nReading configuration from /etc/bird/bird.conf\n/tmp/f.conf:3:9 syntax error\n"));
    }
}
