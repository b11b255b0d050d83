//! A kubelet for the worker pods of one test: it registers its own Node
//! (without `tau2.dev/fake-node`, so kwok leaves it alone), keeps it Ready
//! with a Lease, and runs each pod bound to it as a process: the real
//! `tau2-worker` in a root of its own (a private mount namespace and a
//! chroot, as a container runtime would), with the pod's command, args and
//! environment, its volumes mounted where the pod says, and its status
//! (Running, then Succeeded or Failed with the exit code and the termination
//! message) posted through the status subresource.
//!
//! The "image" is what a worker image would hold: the binary on PATH, libtorch
//! on LD_LIBRARY_PATH, the tau2-bench data at `/opt/tau2` (the pipeline's
//! default `dataUri`) and the Qwen3 tokenizer at `TAU2_QWEN3_TOKENIZER_DIR`;
//! the rest of the root file system is the host's `/usr` and libraries,
//! read-only. Volumes: ConfigMap and Secret files materialised, emptyDir a
//! fresh directory, and a claim the directory of its bound hostPath volume
//! (with `subPath` created as the kubelet does); `fsGroup` owns what the pod
//! may write and the process runs as `runAsUser`/`runAsGroup`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// What a worker image holds, from this machine.
#[derive(Clone, Debug)]
pub struct Image {
    pub worker: PathBuf,
    /// The directory holding libtorch's `torch/` (and `nvidia/`).
    pub libtorch: PathBuf,
    pub tau2_data: PathBuf,
    pub tokenizer: PathBuf,
}

impl Image {
    const BIN: &str = "/opt/tau2-worker/bin";
    const LIBTORCH: &str = "/opt/libtorch";
    const DATA: &str = "/opt/tau2";
    const TOKENIZER: &str = "/opt/qwen3-tokenizer";

    /// The image's environment (the pod's own variables override it).
    fn env(&self) -> Vec<(String, String)> {
        [
            (
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", Self::BIN),
            ),
            ("LD_LIBRARY_PATH", format!("{}/torch/lib", Self::LIBTORCH)),
            ("TAU2_QWEN3_TOKENIZER_DIR", Self::TOKENIZER.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// (host path, path in the root, is a file).
    fn mounts(&self) -> Vec<(PathBuf, String, bool)> {
        vec![
            (
                self.worker.clone(),
                format!("{}/tau2-worker", Self::BIN),
                true,
            ),
            (self.libtorch.clone(), Self::LIBTORCH.to_owned(), false),
            (self.tau2_data.clone(), Self::DATA.to_owned(), false),
            (self.tokenizer.clone(), Self::TOKENIZER.to_owned(), false),
        ]
    }
}

/// Pods this kubelet ran: (namespace/name, exit code, log file).
pub type Ran = Arc<Mutex<Vec<(String, i32, PathBuf)>>>;

pub struct Kubelet {
    pub node: String,
    pub ran: Ran,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Kubelet {
    /// Registers `node`, then runs the pods bound to it; `dir` holds the
    /// pods' roots, volumes and logs.
    pub async fn start(client: &Client, node: &str, image: Image, dir: &Path) -> Result<Kubelet> {
        for tool in ["unshare", "mount", "chroot", "sh", "chgrp", "chmod"] {
            which(tool)
                .with_context(|| format!("the kubelet needs {tool} (util-linux, coreutils)"))?;
        }
        register(client, node).await?;
        let ran: Ran = Arc::default();
        let heartbeat = tokio::spawn(heartbeat(client.clone(), node.to_owned()));
        let pods = tokio::spawn(run_pods(
            client.clone(),
            node.to_owned(),
            Arc::new(image),
            dir.to_owned(),
            ran.clone(),
        ));
        Ok(Kubelet {
            node: node.to_owned(),
            ran,
            tasks: vec![heartbeat, pods],
        })
    }

    /// Stops and removes the Node (pods still running are killed with their tasks).
    pub async fn stop(self, client: &Client) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = Api::<Node>::all(client.clone())
            .delete(&self.node, &DeleteParams::default())
            .await;
        let _ = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .delete(&self.node, &DeleteParams::default())
            .await;
    }
}

fn which(tool: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .with_context(|| format!("{tool} is not on PATH"))
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn node_status() -> serde_json::Value {
    let resources =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let cond = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": "tau2 e2e kubelet",
               "lastHeartbeatTime": now(), "lastTransitionTime": now()})
    };
    json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
    }})
}

async fn register(client: &Client, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let obj: Node = serde_json::from_value(json!({
        "metadata": {"name": node, "labels": {
            "kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "tau2.dev/e2e-kubelet": "true"}},
    }))?;
    nodes
        .create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("registering the node {node}"))?;
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(node_status()))
        .await
        .context("posting the node's status")?;
    renew(client, node).await
}

async fn renew(client: &Client, node: &str) -> Result<()> {
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                 "renewTime": MicroTime(Timestamp::now())},
    }))?;
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .patch(
            node,
            &PatchParams::apply("tau2-e2e-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await
        .context("renewing the node lease")?;
    Ok(())
}

/// The node lifecycle controller taints a node whose Lease and Ready
/// heartbeat go stale; renew both well within its 40 s grace period.
async fn heartbeat(client: Client, node: String) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Err(e) = renew(&client, &node).await {
            tracing::warn!(error = %e, "node lease");
        }
        if let Err(e) = Api::<Node>::all(client.clone())
            .patch_status(&node, &PatchParams::default(), &Patch::Merge(node_status()))
            .await
        {
            tracing::warn!(error = %e, "node status");
        }
    }
}

async fn run_pods(client: Client, node: String, image: Arc<Image>, dir: PathBuf, ran: Ran) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher::watcher(pods, config).boxed();
    // Pod uid -> its runner, so each pod runs once.
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods");
                continue;
            }
        };
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            // Kill what runs, then confirm the deletion as a kubelet does.
            if let Some(task) = running.remove(&uid) {
                task.abort();
            }
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let _ = api
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if running.contains_key(&uid) || matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let task = tokio::spawn(run_pod(
            client.clone(),
            pod,
            image.clone(),
            dir.clone(),
            ran.clone(),
        ));
        running.insert(uid, task);
    }
}

/// Runs one pod to its end and reports it; a setup error fails the pod.
async fn run_pod(client: Client, pod: Pod, image: Arc<Image>, dir: PathBuf, ran: Ran) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_dir = dir.join("pods").join(pod.uid().unwrap_or_default());
    let started = now();
    let outcome = match Prepared::new(&client, &pod, &image, &dir, &pod_dir).await {
        Ok(prepared) => {
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(running(&prepared, &started)),
                )
                .await;
            prepared.run().await
        }
        Err(e) => Err(e),
    };
    let status = match outcome {
        Ok(exit) => {
            ran.lock().unwrap_or_else(|e| e.into_inner()).push((
                format!("{ns}/{name}"),
                exit.code,
                exit.log.clone(),
            ));
            terminated(&pod, &started, exit.code, &exit.message)
        }
        Err(e) => {
            tracing::warn!(pod = %name, error = format!("{e:#}"), "the pod could not run");
            terminated(&pod, &started, 128, &format!("e2e kubelet: {e:#}"))
        }
    };
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        tracing::warn!(pod = %name, error = %e, "posting the pod's end");
    }
}

fn container_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

fn running(p: &Prepared, started: &Time) -> serde_json::Value {
    json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}], "startTime": started,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
            {"type": "Ready", "status": "True", "lastTransitionTime": started}],
        "containerStatuses": [{"name": p.container, "image": p.image_name, "imageID": "",
            "ready": true, "restartCount": 0, "started": true,
            "state": {"running": {"startedAt": started}}}],
    }})
}

fn terminated(pod: &Pod, started: &Time, code: i32, message: &str) -> serde_json::Value {
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let ended = now();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    json!({"status": {
        "phase": phase, "startTime": started,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": ended},
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": ended}],
        "containerStatuses": [{"name": container_name(pod), "image": image, "imageID": "",
            "ready": false, "restartCount": 0, "started": false,
            "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                     "startedAt": started, "finishedAt": ended}}}],
    }})
}

/// How a container ended.
struct Exit {
    code: i32,
    message: String,
    log: PathBuf,
}

/// A pod ready to start: its root, mounts, environment and command.
struct Prepared {
    container: String,
    image_name: String,
    root: PathBuf,
    /// (host path, path in the root, read-only, is a file).
    mounts: Vec<(PathBuf, String, bool, bool)>,
    env: Vec<(String, String)>,
    argv: Vec<String>,
    /// runAsUser, runAsGroup, and the supplementary group (fsGroup).
    user: Option<(i64, i64, i64)>,
    termination: PathBuf,
    fallback_to_logs: bool,
    log: PathBuf,
}

impl Prepared {
    async fn new(
        client: &Client,
        pod: &Pod,
        image: &Image,
        dir: &Path,
        pod_dir: &Path,
    ) -> Result<Prepared> {
        let ns = pod.namespace().unwrap_or_default();
        let spec = pod.spec.as_ref().context("a pod without spec")?;
        let [c] = spec.containers.as_slice() else {
            bail!("the e2e kubelet runs pods of one container");
        };
        std::fs::create_dir_all(pod_dir)?;
        let root = pod_dir.join("root");
        std::fs::create_dir_all(&root)?;
        let sc = spec.security_context.clone().unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let uid = csc.run_as_user.or(sc.run_as_user);
        let gid = csc.run_as_group.or(sc.run_as_group).or(uid);
        let fs_group = sc.fs_group;

        // Volumes: a directory (or file) on this machine for each.
        let mut sources: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let vdir = pod_dir.join("volumes").join(&v.name);
            let (path, writable) = if let Some(cm) = &v.config_map {
                let data = Api::<ConfigMap>::namespaced(client.clone(), &ns)
                    .get(&cm.name)
                    .await
                    .with_context(|| format!("configMap {}", cm.name))?
                    .data
                    .unwrap_or_default();
                write_files(&vdir, data.into_iter().map(|(k, v)| (k, v.into_bytes())))?;
                (vdir, false)
            } else if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                let data = Api::<Secret>::namespaced(client.clone(), &ns)
                    .get(&name)
                    .await
                    .with_context(|| format!("secret {name}"))?
                    .data
                    .unwrap_or_default();
                write_files(&vdir, data.into_iter().map(|(k, v)| (k, v.0)))?;
                (vdir, false)
            } else if v.empty_dir.is_some() {
                std::fs::create_dir_all(&vdir)?;
                (vdir, true)
            } else if let Some(pvc) = &v.persistent_volume_claim {
                (claim_dir(client, &ns, &pvc.claim_name, dir).await?, true)
            } else {
                bail!("the e2e kubelet does not support volume {}", v.name);
            };
            if writable && let Some(g) = fs_group {
                own(&path, g)?;
            }
            sources.insert(v.name.clone(), (path, writable));
        }
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let (src, writable) = sources
                .get(&m.name)
                .with_context(|| format!("volumeMount of unknown volume {}", m.name))?;
            let mut src = src.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                src = src.join(sub);
                std::fs::create_dir_all(&src)?;
                if *writable && let Some(g) = fs_group {
                    own(&src, g)?;
                }
            }
            mounts.push((
                src,
                m.mount_path.clone(),
                m.read_only.unwrap_or(false),
                false,
            ));
        }
        for (host, path, file) in image.mounts() {
            mounts.push((host, path, true, file));
        }
        let termination = pod_dir.join("termination-log");
        std::fs::write(&termination, "")?;
        if let Some(g) = fs_group {
            own(&termination, g)?;
        }
        let termination_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push((termination.clone(), termination_path, false, true));

        let mut env = image.env();
        for (k, v) in container_env(client, &ns, pod, c).await? {
            env.retain(|(name, _)| *name != k);
            env.push((k, v));
        }
        let argv: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .cloned()
            .collect();
        if argv.is_empty() {
            bail!("the image has no entrypoint: the pod must name its command");
        }
        Ok(Prepared {
            container: c.name.clone(),
            image_name: c.image.clone().unwrap_or_default(),
            root,
            mounts,
            env,
            argv,
            user: uid.zip(gid).map(|(u, g)| (u, g, fs_group.unwrap_or(g))),
            termination,
            fallback_to_logs: c.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
            log: pod_dir.join("container.log"),
        })
    }

    /// The script that builds the root in a private mount namespace and
    /// starts the command in it; every mount goes with the namespace.
    fn script(&self) -> Result<String> {
        let root = self.root.display().to_string();
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut lines = vec!["set -eu".to_owned(), format!("r={}", q(&root))];
        let point = |path: &str, file: bool, lines: &mut Vec<String>| {
            let at = format!("\"$r\"{}", q(path));
            if file {
                lines.push(format!("mkdir -p \"$(dirname {at})\" && touch {at}"));
            } else {
                lines.push(format!("mkdir -p {at}"));
            }
            at
        };
        // The host's system directories, read-only; merged-/usr links stay links.
        for dir in ["usr", "bin", "sbin", "lib", "lib64", "lib32"] {
            let host = Path::new("/").join(dir);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&host)?;
                    lines.push(format!(
                        "[ -e \"$r/{dir}\" ] || ln -s {} \"$r/{dir}\"",
                        q(&target.display().to_string())
                    ));
                }
                Ok(_) => {
                    let at = point(&format!("/{dir}"), false, &mut lines);
                    lines.push(format!("mount --rbind /{dir} {at}"));
                    lines.push(format!("mount -o remount,bind,ro {at}"));
                }
                Err(_) => {}
            }
        }
        // A minimal /etc: the loader's cache and name service files.
        lines.push("mkdir -p \"$r/etc\"".into());
        for f in [
            "ld.so.cache",
            "ld.so.conf",
            "hosts",
            "resolv.conf",
            "nsswitch.conf",
            "passwd",
            "group",
        ] {
            lines.push(format!("[ ! -e /etc/{f} ] || cp /etc/{f} \"$r/etc/{f}\""));
        }
        for (fs, path) in [("proc", "/proc"), ("sys", "/sys")] {
            let at = point(path, false, &mut lines);
            lines.push(format!("mount --rbind /{fs} {at}"));
        }
        let dev = point("/dev", false, &mut lines);
        lines.push(format!("mount -t tmpfs -o mode=755 tmpfs {dev}"));
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            let at = point(&format!("/dev/{node}"), true, &mut lines);
            lines.push(format!("mount --bind /dev/{node} {at}"));
        }
        let shm = point("/dev/shm", false, &mut lines);
        lines.push(format!("mount -t tmpfs -o mode=1777 tmpfs {shm}"));
        for (host, path, ro, file) in &self.mounts {
            let at = point(path, *file, &mut lines);
            lines.push(format!(
                "mount --bind {} {at}",
                q(&host.display().to_string())
            ));
            if *ro {
                lines.push(format!("mount -o remount,bind,ro {at}"));
            }
        }
        let chroot = which("chroot")?.display().to_string();
        let user = match self.user {
            Some((u, g, groups)) => format!("--userspec={u}:{g} --groups={groups} "),
            None => String::new(),
        };
        lines.push(format!("exec {chroot} {user}\"$r\" \"$@\""));
        Ok(lines.join("\n"))
    }

    async fn run(&self) -> Result<Exit> {
        let script = self.script()?;
        let log = std::fs::File::create(&self.log)?;
        let mut child = tokio::process::Command::new(which("unshare")?)
            .args(["--mount", "--propagation", "private", "--"])
            .arg(which("sh")?)
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(&self.argv)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the container")?;
        let status = child.wait().await?;
        let code = status.code().unwrap_or(137);
        let mut message = std::fs::read_to_string(&self.termination).unwrap_or_default();
        if message.is_empty() && code != 0 && self.fallback_to_logs {
            // The kubelet's fallback: the log's last 80 lines, at most 2048 bytes.
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(80).collect();
            let tail = lines.into_iter().rev().collect::<Vec<_>>().join("\n");
            let mut start = tail.len().saturating_sub(2048);
            while !tail.is_char_boundary(start) {
                start += 1;
            }
            message = tail[start..].to_owned();
        }
        Ok(Exit {
            code,
            message,
            log: self.log.clone(),
        })
    }
}

fn write_files(dir: &Path, files: impl Iterator<Item = (String, Vec<u8>)>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(&name), bytes)
            .with_context(|| format!("writing {}", dir.join(&name).display()))?;
    }
    Ok(())
}

/// fsGroup: the group owns the volume and may write it.
fn own(path: &Path, group: i64) -> Result<()> {
    for (tool, arg) in [("chgrp", group.to_string()), ("chmod", "g+rwX".to_owned())] {
        let ok = std::process::Command::new(tool)
            .arg("-R")
            .arg(arg)
            .arg(path)
            .status()?
            .success();
        if !ok {
            bail!("{tool} on {} failed", path.display());
        }
    }
    Ok(())
}

/// A bound claim's directory: the hostPath of its volume.
async fn claim_dir(client: &Client, ns: &str, claim: &str, _dir: &Path) -> Result<PathBuf> {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(claim)
        .await
        .with_context(|| format!("claim {claim}"))?;
    let volume = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("claim {claim} is not bound"))?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await?;
    let path = pv
        .spec
        .and_then(|s| s.host_path)
        .map(|h| PathBuf::from(h.path))
        .with_context(|| format!("volume {volume} is not a hostPath volume"))?;
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

/// The container's environment: values, Secret and ConfigMap keys, and the
/// downward API fields the operator uses.
async fn container_env(
    client: &Client,
    ns: &str,
    pod: &Pod,
    c: &Container,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, None) => String::new(),
            (None, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(client.clone(), ns)
                        .get(&r.name)
                        .await
                        .with_context(|| format!("secret {} for ${}", r.name, e.name))?;
                    let bytes = secret
                        .data
                        .unwrap_or_default()
                        .remove(&r.key)
                        .with_context(|| format!("secret {} has no {}", r.name, r.key))?;
                    String::from_utf8(bytes.0)?
                } else if let Some(r) = &from.config_map_key_ref {
                    Api::<ConfigMap>::namespaced(client.clone(), ns)
                        .get(&r.name)
                        .await
                        .with_context(|| format!("configMap {} for ${}", r.name, e.name))?
                        .data
                        .unwrap_or_default()
                        .remove(&r.key)
                        .with_context(|| format!("configMap {} has no {}", r.name, r.key))?
                } else if let Some(f) = &from.field_ref {
                    match f.field_path.as_str() {
                        "metadata.name" => pod.name_any(),
                        "metadata.namespace" => ns.to_owned(),
                        "metadata.uid" => pod.uid().unwrap_or_default(),
                        "spec.nodeName" => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default(),
                        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
                        other => bail!("the e2e kubelet does not support fieldRef {other}"),
                    }
                } else {
                    bail!("the e2e kubelet does not support the source of ${}", e.name);
                }
            }
        };
        out.push((e.name.clone(), value));
    }
    Ok(out)
}
