//! The resolver: the labels of a cgroup, merged from every enabled identity source.
use std::path::{Component, Path, PathBuf};

use crate::identity::config::IdentityConfig;
use crate::identity::error::IdentityError;
use crate::identity::kubernetes::{self, KubernetesSource};
use crate::identity::pod_cache::PodCache;
use crate::identity::slurm::{self, SlurmSource};
use crate::identity::static_file::{self, StaticSource};
use crate::identity::workload::{Labels, Workload, CGROUP_LABEL};
use crate::watch::FileWatch;

/// Resolves cgroup paths (relative to the cgroup root) to workloads.
///
/// Sources are consulted in the order kubernetes, slurm, static; when two give the same label,
/// the later wins (the operator's static file has the last word). [`CGROUP_LABEL`] is always
/// the cgroup's own path.
#[derive(Debug, Default)]
pub struct Resolver {
    kubernetes: Option<KubernetesSource>,
    slurm: Option<SlurmSource>,
    static_file: Option<StaticSource>,
    /// The static mapping's file, re-read when its content changes ([`Resolver::reload_static`]).
    static_watch: Option<(PathBuf, FileWatch)>,
    /// Bumped at each reload of the static mapping.
    static_version: u64,
}

impl Resolver {
    /// A resolver over the given sources (`None`: off).
    pub fn new(
        kubernetes: Option<KubernetesSource>,
        slurm: Option<SlurmSource>,
        static_file: Option<StaticSource>,
    ) -> Self {
        Resolver { kubernetes, slurm, static_file, ..Default::default() }
    }

    /// The sources `config` turns on: reads the static file; the Kubernetes source reads
    /// `pods`, which the caller fills by running the watch
    /// ([`run_pod_watch`](crate::identity::kube_client::run_pod_watch)).
    pub fn from_config(config: &IdentityConfig, pods: &PodCache) -> Result<Self, IdentityError> {
        let static_watch = config.static_file.as_ref().map(|s| (s.file.clone(), FileWatch::new(&s.file)));
        let static_file = config.static_file.as_ref().map(|s| StaticSource::load(&s.file)).transpose()?;
        Ok(Resolver {
            kubernetes: config.kubernetes.as_ref().map(|_| KubernetesSource::new(pods.clone())),
            slurm: config.slurm.as_ref().map(|s| SlurmSource::new(&s.job_info_dir)),
            static_file,
            static_watch,
            static_version: 0,
        })
    }

    /// Changes whenever what the sources read may have changed (a Slurm job file, the pods, the
    /// static mapping): labels resolved under the same version are still right.
    pub fn inputs_version(&self) -> (u64, u64, u64) {
        (
            self.slurm.as_ref().map_or(0, SlurmSource::version),
            self.kubernetes.as_ref().map_or(0, |k| k.cache().generation()),
            self.static_version,
        )
    }

    /// Re-reads the static mapping if its file's content changed since it was read. A file that
    /// no longer parses is refused with every problem logged, and the mapping in force stays
    /// (as a rejected policy reload keeps the policy in force). Returns whether it changed.
    pub fn reload_static(&mut self) -> bool {
        let Some((path, watch)) = self.static_watch.as_mut() else { return false };
        if !watch.changed() {
            return false;
        }
        match StaticSource::load(path) {
            Ok(mapping) => {
                tracing::info!(path = %path.display(), "static identity file reloaded");
                self.static_file = Some(mapping);
                self.static_version += 1;
                true
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e,
                    "static identity file refused; the mapping in force stays");
                false
            }
        }
    }

    /// The workload at `path` (relative to the cgroup root; a leading `/` is ignored), or
    /// `None` if no source recognises it.
    pub fn resolve(&self, path: &Path) -> Option<Workload> {
        let path = normalize(path)?;
        let mut merged: Option<(Labels, &'static str)> = None;
        let found = [
            (kubernetes::SOURCE, self.kubernetes.as_ref().and_then(|s| s.labels(&path))),
            (slurm::SOURCE, self.slurm.as_ref().and_then(|s| s.labels(&path))),
            (static_file::SOURCE, self.static_file.as_ref().and_then(|s| s.labels(&path))),
        ];
        for (source, labels) in found {
            if let Some(labels) = labels {
                let (all, by) = merged.get_or_insert_with(Default::default);
                all.extend(labels);
                *by = source;
            }
        }
        let (mut labels, source) = merged?;
        labels.insert(CGROUP_LABEL.to_owned(), path.to_string_lossy().into_owned());
        Some(Workload { path, labels, source })
    }
}

/// `path` without a leading `/` or `.` components; `None` if it climbs (`..`) or is empty.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::pod_cache::PodInfo;

    const UID: &str = "c4d2e8f0-1a3b-4c5d-8e9f-0a1b2c3d4e5f";

    fn resolver(dir: &Path) -> Resolver {
        let pods = PodCache::new();
        pods.upsert(PodInfo {
            uid: UID.into(),
            namespace: "inference".into(),
            name: "vllm-0".into(),
            service_account: Some("default".into()),
            labels: [("app".to_owned(), "vllm".to_owned())].into(),
            mirror_uid: None,
        });
        let statics = "- pattern: \"system.slice/ollama.service\"\n  labels: {app: ollama}\n\
                       - pattern: \"kubepods.slice/**/kubepods-pod*.slice/**\"\n  labels: {app: overridden, tier: gold}\n";
        let statics = StaticSource::parse(statics).unwrap_or_else(|e| panic!("static file refused: {e:?}"));
        Resolver::new(Some(KubernetesSource::new(pods)), Some(SlurmSource::new(dir)), Some(statics))
    }

    #[test]
    fn merges_sources_static_last() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = resolver(dir.path());
        let path = format!(
            "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{}.scope",
            UID.replace('-', "_"),
            "ab12".repeat(16)
        );
        let w = r.resolve(Path::new(&path)).expect("pod cgroup resolved");
        assert_eq!(w.source, "static");
        assert_eq!((w.labels["app"].as_str(), w.labels["tier"].as_str()), ("overridden", "gold"));
        assert_eq!(w.labels["k8s.pod"], "vllm-0");
        assert_eq!(w.labels[CGROUP_LABEL], path);
    }

    #[test]
    fn from_config_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let statics = dir.path().join("workloads.yaml");
        std::fs::write(&statics, "- pattern: \"system.slice/ollama.service\"\n  labels: {app: ollama}\n")
            .expect("static file");
        let jobs = dir.path().join("slurm-jobs");
        std::fs::create_dir(&jobs).expect("job dir");
        std::fs::write(jobs.join("512"), "user=bob\nprofile=eval\n").expect("job file");
        let text = format!(
            "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  static: {{file: {}}}\n  \
             slurm: {{jobInfoDir: {}}}\n",
            statics.display(),
            jobs.display()
        );
        let config = IdentityConfig::parse(&text).unwrap_or_else(|e| panic!("config refused: {e:?}"));
        let r = Resolver::from_config(&config, &PodCache::new()).unwrap_or_else(|e| panic!("resolver: {e}"));
        let job = r.resolve(Path::new("job_512/step_extern/user/task_special")).expect("job cgroup");
        assert_eq!(
            (job.labels["slurm.user"].as_str(), job.labels["ringfence.dev/profile"].as_str()),
            ("bob", "eval")
        );
        assert_eq!(r.resolve(Path::new("system.slice/ollama.service")).map(|w| w.source), Some("static"));
        let pod = format!("kubepods-pod{}.slice", UID.replace('-', "_"));
        assert_eq!(r.resolve(Path::new(&pod)), None, "kubernetes source is off");

        let missing = IdentityConfig {
            static_file: config
                .static_file
                .map(|_| crate::identity::config::StaticConfig { file: dir.path().join("absent.yaml") }),
            ..IdentityConfig::default()
        };
        let err =
            Resolver::from_config(&missing, &PodCache::new()).expect_err("missing static file accepted");
        assert!(err.to_string().contains("absent.yaml: cannot read"), "{err}");
    }

    #[test]
    fn each_source_alone_and_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = resolver(dir.path());
        let w = r.resolve(Path::new("/system.slice/ollama.service")).expect("static match");
        assert_eq!((w.source, w.path.as_path()), ("static", Path::new("system.slice/ollama.service")));
        assert_eq!(w.labels[CGROUP_LABEL], "system.slice/ollama.service", "leading / dropped");
        let w =
            r.resolve(Path::new("system.slice/slurmstepd.scope/job_9001/step_0/user/task_0")).expect("job");
        assert_eq!((w.source, w.labels["slurm.job"].as_str()), ("slurm", "9001"));
        assert_eq!(r.resolve(Path::new("system.slice/sshd.service")), None);
        assert_eq!(r.resolve(Path::new("../etc")), None);
        assert_eq!(r.resolve(Path::new("/")), None);
        assert_eq!(Resolver::default().resolve(Path::new("system.slice/ollama.service")), None);
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    #[test]
    fn static_file_changes_are_picked_up_and_a_bad_file_keeps_the_mapping_in_force() {
        let dir = tempfile::tempdir().expect("temp dir");
        let statics = dir.path().join("workloads.yaml");
        let mapping =
            |app: &str| format!("- pattern: \"system.slice/app.service\"\n  labels: {{app: {app}}}\n");
        std::fs::write(&statics, mapping("one")).expect("static file");
        let text = format!(
            "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  static: {{file: {}}}\n",
            statics.display()
        );
        let config = IdentityConfig::parse(&text).unwrap_or_else(|e| panic!("config refused: {e:?}"));
        let mut r =
            Resolver::from_config(&config, &PodCache::new()).unwrap_or_else(|e| panic!("resolver: {e}"));
        let app =
            |r: &Resolver| r.resolve(Path::new("system.slice/app.service")).map(|w| w.labels["app"].clone());
        let v0 = r.inputs_version();
        assert!(!r.reload_static(), "unchanged file: nothing to reload");
        assert_eq!(app(&r).as_deref(), Some("one"));

        std::fs::write(&statics, mapping("two")).expect("rewrite");
        assert!(r.reload_static(), "a changed file is reloaded");
        assert_eq!(app(&r).as_deref(), Some("two"));
        let v1 = r.inputs_version();
        assert_ne!(v0, v1, "a reload changes the inputs version, so workloads are re-resolved");

        std::fs::write(&statics, "- pattern: [not, a, string]\n").expect("break");
        assert!(!r.reload_static(), "a file that does not parse is refused");
        assert_eq!(app(&r).as_deref(), Some("two"), "the mapping in force stays");
        assert_eq!(r.inputs_version(), v1);
    }
}
