//! Facts about this machine for the server ([`MachineInfo`]): host name, the IP address this node
//! uses to reach the server, platform, OS name/version, agent version. The only network contact is
//! one TCP connection to the server's own host and port, opened to learn the local address and
//! closed at once; no other address is ever contacted.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use fleetrun_wire::agent::MachineInfo;

/// How long to wait for the TCP connection used to learn the local address.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Describes this machine. `server_url` (`http://host:port/...`) names the only host contacted:
/// the IP address reported is the local end of a TCP connection to it (empty if it cannot be
/// reached). Blocking (up to a few seconds); call it from `spawn_blocking` in async code.
pub fn machine_info(server_url: &str) -> MachineInfo {
    let (platform_name, platform_version) = os_name_and_version();
    MachineInfo {
        computer_name: hostname(),
        // With several server URLs (replicas), the first one that answers decides.
        ip_address: crate::channel::server_urls(server_url)
            .into_iter()
            .find_map(local_ip_towards)
            .unwrap_or_default(),
        platform_type: platform_type().to_owned(),
        platform_name,
        platform_version,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn platform_type() -> &'static str {
    if cfg!(target_os = "macos") {
        "MacOS"
    } else {
        "Linux"
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The local IP address of a TCP connection to the server's host and port.
fn local_ip_towards(server_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(server_url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_or_known_default()?;
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs.iter().find_map(|addr| {
        let stream = TcpStream::connect_timeout(addr, PROBE_TIMEOUT).ok()?;
        let ip = stream.local_addr().ok()?.ip();
        Some(ip.to_string())
    })
}

/// `NAME` and `VERSION_ID` from `/etc/os-release` (Linux); `macOS` and `sw_vers` output on macOS.
fn os_name_and_version() -> (String, String) {
    if let Ok(text) = std::fs::read_to_string("/etc/os-release") {
        return parse_os_release(&text);
    }
    if cfg!(target_os = "macos") {
        let version = std::process::Command::new("sw_vers")
            .arg("-productVersion")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        return ("macOS".to_owned(), version);
    }
    (String::new(), String::new())
}

fn parse_os_release(text: &str) -> (String, String) {
    let mut name = String::new();
    let mut version = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
        match key.trim() {
            "NAME" => name = value,
            "VERSION_ID" => version = value,
            _ => {}
        }
    }
    (name, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_is_parsed() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                    VERSION_ID=\"12\"\nID=debian\n# comment\n";
        assert_eq!(
            parse_os_release(text),
            ("Debian GNU/Linux".into(), "12".into())
        );
    }

    #[test]
    fn local_ip_comes_from_a_connection_to_the_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let info = machine_info(&format!("http://127.0.0.1:{port}/"));
        assert_eq!(info.ip_address, "127.0.0.1");
        assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
        assert!(info.platform_type == "Linux" || info.platform_type == "MacOS");
        assert_eq!(machine_info("not a url").ip_address, "");
    }
}
