//! External S3 clients: finding them, configuring them for one test cluster, running them.
//!
//! Each tool is configured through environment variables and files in a temporary directory
//! only, never through the machine's `~/.aws`, `~/.config/rclone` or `~/.s3cfg`: a developer's
//! own settings must neither leak into a test nor be touched by one.
//!
//! A missing tool makes the test print exactly one `skipped: <tool> is not installed` line and
//! return, except under `SDFBS_REQUIRE_E2E=1` (set by `.ci/run`, which installs every tool),
//! where it is a failure: CI must never pass by skipping.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use crate::Cluster;

/// Whether missing tools are failures (`SDFBS_REQUIRE_E2E=1`).
pub fn e2e_required() -> bool {
    std::env::var("SDFBS_REQUIRE_E2E").is_ok_and(|v| v == "1")
}

/// Skips (None, one `skipped:` line) or panics (under `SDFBS_REQUIRE_E2E=1`) because `what`
/// is missing.
fn missing(what: &str, hint: &str) -> Option<PathBuf> {
    if e2e_required() {
        panic!("{what} is not installed, and SDFBS_REQUIRE_E2E=1 forbids skipping{hint}");
    }
    println!("skipped: {what} is not installed");
    None
}

/// Finds executable `name` on `PATH`; see the module documentation for what happens when it
/// is missing.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    match find_on_path(name) {
        Some(p) => Some(p),
        None => missing(name, " (run .ci/run, or install it with apt)"),
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `cmd` and returns its output, whatever its exit status.
pub fn run_output(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("could not run {cmd:?}: {e}"),
    }
}

/// Runs `cmd`, panics with its stdout/stderr unless it exits 0, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run_output(cmd);
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An external S3 client configured for one cluster: [`CliTool::cmd`] builds a command with
/// the configuration in place, [`CliTool::ok`] runs it and insists on success.
pub trait CliTool {
    /// The tool's command with `args`, configured for the cluster.
    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>;

    /// Runs the tool with `args` and returns stdout; panics with the output if it fails.
    fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(&mut self.cmd(args))
    }
}

/// Which aws-cli.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsCliVersion {
    /// aws-cli v1 from PyPI, in the virtualenv `.ci/run` makes; found through `$SDFBS_AWSCLI_V1`.
    V1,
    /// Debian's `awscli` package (v2), `/usr/bin/aws`. Not whatever `aws` is first on `PATH`,
    /// which may be a v1 from pip.
    V2,
}

/// aws-cli configured for one cluster.
pub struct AwsCli {
    exe: PathBuf,
    pub version: AwsCliVersion,
    conf: tempfile::TempDir,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
}

impl AwsCli {
    /// Finds aws-cli `version`, or returns None after one `skipped:` line (a panic under
    /// `SDFBS_REQUIRE_E2E=1`). Call it before starting a cluster.
    pub fn find(version: AwsCliVersion) -> Option<PathBuf> {
        match version {
            AwsCliVersion::V2 => {
                let p = PathBuf::from("/usr/bin/aws");
                if is_executable(&p) {
                    Some(p)
                } else {
                    missing("aws-cli v2", " (apt-get install awscli)")
                }
            }
            AwsCliVersion::V1 => match std::env::var_os("SDFBS_AWSCLI_V1").map(PathBuf::from) {
                Some(p) if is_executable(&p) => Some(p),
                _ => missing(
                    "aws-cli v1",
                    " (SDFBS_AWSCLI_V1 must name its `aws`; .ci/run makes a virtualenv with it)",
                ),
            },
        }
    }

    /// aws-cli `exe` (from [`AwsCli::find`]) configured for `cluster`.
    pub fn new(exe: PathBuf, version: AwsCliVersion, cluster: &Cluster) -> AwsCli {
        let conf = tempdir("sdfbs-awscli-");
        let mut config = format!(
            "[default]\nregion = {}\ns3 =\n    addressing_style = path\n",
            cluster.region
        );
        if version == AwsCliVersion::V1 {
            config.push_str("    signature_version = s3v4\n");
        }
        write(&conf.path().join("config"), &config);
        write(&conf.path().join("credentials"), "");
        AwsCli {
            exe,
            version,
            conf,
            endpoint: cluster.s3_url.clone(),
            access_key: cluster.access_key.clone(),
            secret_key: cluster.secret_key.clone(),
            region: cluster.region.clone(),
        }
    }
}

impl CliTool for AwsCli {
    /// `aws --endpoint-url <cluster> <args>` with credentials and config from the environment
    /// and temporary files.
    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.exe);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("AWS_CONFIG_FILE", self.conf.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.conf.path().join("credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .arg("--endpoint-url")
            .arg(&self.endpoint)
            .args(args);
        cmd
    }
}

/// rclone configured (through `RCLONE_CONFIG_SDFBS_*`) with a remote named `sdfbs:`.
pub struct Rclone {
    exe: PathBuf,
    conf: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Rclone {
    /// rclone `exe` (from `require_tool("rclone")`) configured for `cluster`.
    pub fn new(exe: PathBuf, cluster: &Cluster) -> Rclone {
        let conf = tempdir("sdfbs-rclone-");
        write(&conf.path().join("rclone.conf"), "");
        let env = [
            ("TYPE", "s3"),
            ("PROVIDER", "Other"),
            ("ENV_AUTH", "false"),
            ("ACCESS_KEY_ID", &cluster.access_key),
            ("SECRET_ACCESS_KEY", &cluster.secret_key),
            ("ENDPOINT", &cluster.s3_url),
            ("REGION", &cluster.region),
            ("FORCE_PATH_STYLE", "true"),
        ]
        .iter()
        .map(|(k, v)| (format!("RCLONE_CONFIG_SDFBS_{k}"), v.to_string()))
        .collect();
        Rclone { exe, conf, env }
    }
}

impl CliTool for Rclone {
    /// `rclone <args>` against the `sdfbs:` remote.
    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.exe);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("RCLONE_") || k.starts_with("AWS_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("RCLONE_CONFIG", self.conf.path().join("rclone.conf"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd
    }
}

/// s3cmd with a temporary `--config` file.
pub struct S3cmd {
    exe: PathBuf,
    conf: tempfile::TempDir,
}

impl S3cmd {
    /// s3cmd `exe` (from `require_tool("s3cmd")`) configured for `cluster`.
    pub fn new(exe: PathBuf, cluster: &Cluster) -> S3cmd {
        let conf = tempdir("sdfbs-s3cmd-");
        let host = cluster
            .s3_url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let cfg = format!(
            "[default]\naccess_key = {ak}\nsecret_key = {sk}\nhost_base = {host}\n\
             host_bucket = {host}\nuse_https = False\nsignature_v2 = False\n\
             bucket_location = {region}\ncheck_ssl_certificate = False\nguess_mime_type = False\n",
            ak = cluster.access_key,
            sk = cluster.secret_key,
            region = cluster.region,
        );
        write(&conf.path().join("s3cfg"), &cfg);
        S3cmd { exe, conf }
    }
}

impl CliTool for S3cmd {
    /// `s3cmd --config <tmp> <args>`.
    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config")
            .arg(self.conf.path().join("s3cfg"))
            .args(args);
        cmd
    }
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    match tempfile::Builder::new().prefix(prefix).tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

fn write(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        panic!("cannot write {}: {e}", path.display());
    }
}

/// Checks that `cmd` fails and that its stderr mentions `needle`; returns stderr.
pub fn run_fails_with(cmd: &mut Command, needle: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        bail!("{cmd:?} succeeded but was expected to fail with {needle:?}");
    }
    if !stderr.contains(needle) {
        bail!("{cmd:?} failed without {needle:?} in stderr:\n{stderr}");
    }
    Ok(stderr)
}
