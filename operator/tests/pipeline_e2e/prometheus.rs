//! A real Prometheus (Debian's `prometheus` package, which tests/setup.sh
//! installs) scraping the operator every second, started on a free port with
//! its own configuration and data directory, stopped by PID; and its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts it scraping `target`'s `/metrics`; `dir` holds its
    /// configuration, data and log.
    pub async fn start(target: SocketAddr, port: u16, dir: &Path) -> Result<Prometheus> {
        let bin = ["prometheus", "/usr/bin/prometheus"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .context("prometheus is not installed (tests/setup.sh installs Debian's package)")?;
        std::fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: tau2-operator\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let mut prom = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = get(addr, "/-/ready").await {
                return Ok(prom);
            }
            if let Some(status) = prom.child.try_wait()? {
                bail!(
                    "prometheus exited ({status}); see {}",
                    dir.join("prometheus.log").display()
                );
            }
            if Instant::now() > deadline {
                prom.stop();
                bail!("prometheus was not ready in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// SIGTERM by PID, then up to 20 s for it to end.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `/api/v1/query_range`: the result's series, each with its samples.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: &str,
    ) -> Result<Vec<serde_json::Value>> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            encode(query)
        );
        self.api(&path).await
    }

    /// `/api/v1/series` of one selector over a window.
    pub async fn series(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<Vec<serde_json::Value>> {
        let path = format!(
            "/api/v1/series?match[]={}&start={start:.3}&end={end:.3}",
            encode(selector)
        );
        self.api(&path).await
    }

    async fn api(&self, path: &str) -> Result<Vec<serde_json::Value>> {
        let (code, body) = get(self.addr, path).await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("HTTP {code}: {body}"))?;
        if v["status"] != "success" {
            bail!("{path}: HTTP {code}: {body}");
        }
        let data = &v["data"];
        let list = data.get("result").unwrap_or(data);
        Ok(list.as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP/1.0 GET (so the body is never chunked): status code and body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let (head, body) = text.split_once("\r\n\r\n").context("an HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("an HTTP status")?;
    Ok((code, body.to_owned()))
}
