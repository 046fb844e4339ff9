//! deploy/slurm/prolog.sh and epilog.sh, run with a stand-in `scontrol`, write and remove the
//! job file the agent's Slurm identity source reads.
use std::path::{Path, PathBuf};
use std::process::Command;

use ringfence_agent::identity::slurm::{parse_job_info, SlurmSource};
use ringfence_agent::identity::PROFILE_LABEL;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm").join(name)
}

/// `scontrol show job` as Slurm 23.11 prints it, with `comment` as the job comment.
fn fake_scontrol(dir: &Path, comment: &str) -> PathBuf {
    let path = dir.join("scontrol");
    let output = format!(
        "JobId=4242 JobName=llama-finetune\n   UserId=alice(1001) GroupId=ml(2001) MCS_label=N/A\n   \
         Priority=4294901758 Nice=0 Account=ml-research QOS=normal\n   JobState=CONFIGURING Reason=None \
         Dependency=(null)\n   Partition=gpu AllocNode:Sid=login-1:41273\n   NodeList=gpu-node-[07-08]\n   \
         Comment={comment}\n   StdOut=/home/alice/slurm-4242.out\n"
    );
    let body = format!("#!/bin/sh\n[ \"$1 $2 $3\" = 'show job 4242' ] || exit 1\ncat <<'OUT'\n{output}OUT\n");
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    let status = Command::new("chmod").arg("+x").arg(&path).status().expect("chmod runs");
    assert!(status.success(), "chmod +x {}", path.display());
    path
}

fn run(name: &str, jobs: &Path, scontrol: &Path, job: &str) {
    let output = Command::new("sh")
        .arg(script(name))
        .env("RINGFENCE_JOB_INFO_DIR", jobs)
        .env("SCONTROL", scontrol)
        .env("SLURM_JOB_ID", job)
        .env("SLURM_JOB_USER", "alice")
        .env("SLURM_JOB_ACCOUNT", "ml-research")
        .env("SLURM_JOB_PARTITION", "gpu")
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(output.status.success(), "{name} failed: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn prolog_writes_the_job_file_and_epilog_removes_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let jobs = tmp.path().join("slurm-jobs");
    let scontrol = fake_scontrol(tmp.path(), "ringfence:profile=llm-training owner=team-a");
    run("prolog.sh", &jobs, &scontrol, "4242");
    let file = jobs.join("4242");
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("prolog wrote no {}: {e}", file.display()));
    assert_eq!(text, "user=alice\naccount=ml-research\npartition=gpu\nprofile=llm-training\n");
    let (labels, problems) = parse_job_info(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(labels.get(PROFILE_LABEL).map(String::as_str), Some("llm-training"));

    let source = SlurmSource::new(&jobs);
    let step = source.labels(Path::new("job_4242/step_batch/user/task_0")).expect("job cgroup");
    assert_eq!((step["slurm.user"].as_str(), step["slurm.step"].as_str()), ("alice", "batch"));

    run("epilog.sh", &jobs, &scontrol, "4242");
    assert!(!file.exists(), "epilog left {}", file.display());
}

#[test]
fn prolog_without_a_profile_or_scontrol_still_succeeds() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let jobs = tmp.path().join("slurm-jobs");
    let scontrol = fake_scontrol(tmp.path(), "(null)");
    run("prolog.sh", &jobs, &scontrol, "4242");
    let text = std::fs::read_to_string(jobs.join("4242")).expect("job file");
    assert!(!text.contains("profile="), "no profile expected: {text}");
    // scontrol fails (wrong job): the file is written without a profile, the job is not failed.
    run("prolog.sh", &jobs, &scontrol, "4343");
    let text = std::fs::read_to_string(jobs.join("4343")).expect("job file");
    assert_eq!(text, "user=alice\naccount=ml-research\npartition=gpu\n");
    // Not a job id: nothing written, still success.
    run("prolog.sh", &jobs, &scontrol, "../etc");
    let names: Vec<String> = std::fs::read_dir(&jobs)
        .expect("job dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
