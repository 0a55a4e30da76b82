//! What to download for which machine: the [`Tool`]s, the [`Platform`] in the publishers'
//! words, and the [`Sources`] URL templates.

use std::fmt;

use super::DownloadError;

/// A downloadable tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// An Istio release archive (istioctl, samples, manifests).
    Istio,
    /// The kind binary.
    Kind,
}

impl Tool {
    /// The tool's name, as written in the lock file and the cache.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Istio => "istio",
            Tool::Kind => "kind",
        }
    }

    /// The suffix of the publisher's checksum file, appended to the file's URL.
    pub fn checksum_suffix(self) -> &'static str {
        match self {
            Tool::Istio => ".sha256",
            Tool::Kind => ".sha256sum",
        }
    }

    /// The version as the publisher tags it: Istio without a `v` (`1.30.3`), kind
    /// with one (`v0.29.0`). Refuses anything but letters, digits, `.`, `-`, `+`
    /// and `_`, so a version can never become a path.
    pub fn normalize_version(self, version: &str) -> Result<String, DownloadError> {
        let v = version.trim();
        let bare = v.strip_prefix('v').unwrap_or(v);
        let ok = !bare.is_empty()
            && bare.starts_with(|c: char| c.is_ascii_digit())
            && !bare.contains("..")
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
        if !ok {
            return Err(DownloadError::InvalidVersion {
                tool: self,
                version: version.to_string(),
            });
        }
        Ok(match self {
            Tool::Istio => bare.to_string(),
            Tool::Kind => format!("v{bare}"),
        })
    }

    /// The publisher's file name for a (normalized) version on a platform, e.g.
    /// `istio-1.30.3-osx-arm64.tar.gz` or `kind-linux-amd64`.
    pub fn file_name(self, version: &str, platform: &Platform) -> String {
        match self {
            Tool::Istio => format!("istio-{version}-{}.tar.gz", platform.istio_suffix()),
            Tool::Kind => format!("{}-{}-{}", self.name(), platform.os, platform.arch),
        }
    }

    /// A version to show in messages as an example.
    pub fn example_version(self) -> &'static str {
        match self {
            Tool::Istio => "1.30.3",
            Tool::Kind => "v0.29.0",
        }
    }

    /// True for tools that are a single executable (kind).
    pub fn is_executable(self) -> bool {
        !matches!(self, Tool::Istio)
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An operating system and CPU architecture in the publishers' words: os `linux` or
/// `darwin`, arch `amd64` or `arm64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux` or `darwin`.
    pub os: String,
    /// `amd64` or `arm64`.
    pub arch: String,
}

impl Platform {
    /// A platform from publisher names; anything but linux/darwin and amd64/arm64 is refused.
    pub fn new(os: &str, arch: &str) -> Result<Self, DownloadError> {
        if !matches!(os, "linux" | "darwin") || !matches!(arch, "amd64" | "arm64") {
            return Err(DownloadError::UnsupportedPlatform {
                os: os.to_string(),
                arch: arch.to_string(),
            });
        }
        Ok(Platform {
            os: os.into(),
            arch: arch.into(),
        })
    }

    /// The platform this process runs on (from [`std::env::consts`]).
    pub fn current() -> Result<Self, DownloadError> {
        Self::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    /// Maps Rust's names (`linux`/`macos`, `x86_64`/`aarch64`) to the publishers'.
    pub fn from_rust(os: &str, arch: &str) -> Result<Self, DownloadError> {
        let o = match os {
            "linux" => "linux",
            "macos" => "darwin",
            other => other,
        };
        let a = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Self::new(o, a)
    }

    /// Istio's platform suffix: `linux-amd64`, `linux-arm64`, `osx` (darwin amd64) or
    /// `osx-arm64`.
    pub fn istio_suffix(&self) -> String {
        match (self.os.as_str(), self.arch.as_str()) {
            ("darwin", "amd64") => "osx".into(),
            ("darwin", arch) => format!("osx-{arch}"),
            (os, arch) => format!("{os}-{arch}"),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

/// Where the files come from: one URL template per tool. Placeholders: `{version}` (as the
/// publisher tags it), `{file}` (the publisher's file name), `{os}`, `{arch}`. The checksum
/// file's URL is the file's URL plus [`Tool::checksum_suffix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Istio release archives.
    pub istio: String,
    /// kind binaries.
    pub kind: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            istio: "https://github.com/istio/istio/releases/download/{version}/{file}".into(),
            kind: "https://github.com/kubernetes-sigs/kind/releases/download/{version}/{file}"
                .into(),
        }
    }
}

impl Sources {
    /// Every tool from one mirror laid out as `<base>/<tool>/<version>/<file>` (also what
    /// the tests serve).
    pub fn mirror(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        let t = |tool: &str| format!("{base}/{tool}/{{version}}/{{file}}");
        Sources {
            istio: t("istio"),
            kind: t("kind"),
        }
    }

    /// The template for a tool.
    pub fn template(&self, tool: Tool) -> &str {
        match tool {
            Tool::Istio => &self.istio,
            Tool::Kind => &self.kind,
        }
    }

    /// The file's URL for a (normalized) version on a platform.
    pub fn url(&self, tool: Tool, version: &str, platform: &Platform) -> String {
        self.template(tool)
            .replace("{version}", version)
            .replace("{file}", &tool.file_name(version, platform))
            .replace("{os}", &platform.os)
            .replace("{arch}", &platform.arch)
    }

    /// The URL of the publisher's checksum file for that file.
    pub fn checksum_url(&self, tool: Tool, version: &str, platform: &Platform) -> String {
        format!(
            "{}{}",
            self.url(tool, version, platform),
            tool.checksum_suffix()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_map_to_publisher_names() {
        let p = Platform::from_rust("macos", "x86_64").unwrap();
        assert_eq!((p.os.as_str(), p.arch.as_str()), ("darwin", "amd64"));
        assert_eq!(p.istio_suffix(), "osx");
        assert_eq!(
            Platform::new("darwin", "arm64").unwrap().istio_suffix(),
            "osx-arm64"
        );
        assert_eq!(
            Platform::new("linux", "arm64").unwrap().istio_suffix(),
            "linux-arm64"
        );
        assert!(Platform::from_rust("windows", "x86_64").is_err());
        let linux = Platform::new("linux", "amd64").unwrap();
        assert_eq!(
            Tool::Istio.file_name("1.30.3", &linux),
            "istio-1.30.3-linux-amd64.tar.gz"
        );
        assert_eq!(Tool::Kind.file_name("v0.29.0", &linux), "kind-linux-amd64");
    }

    #[test]
    fn default_sources_are_the_publishers() {
        let s = Sources::default();
        let p = Platform::new("darwin", "amd64").unwrap();
        assert_eq!(
            s.checksum_url(Tool::Istio, "1.12.1", &p),
            "https://github.com/istio/istio/releases/download/1.12.1/istio-1.12.1-osx.tar.gz.sha256"
        );
        let l = Platform::new("linux", "amd64").unwrap();
        assert_eq!(
            s.checksum_url(Tool::Kind, "v0.29.0", &l),
            "https://github.com/kubernetes-sigs/kind/releases/download/v0.29.0/kind-linux-amd64.sha256sum"
        );
        assert_eq!(
            s.url(Tool::Kind, "v0.29.0", &l),
            "https://github.com/kubernetes-sigs/kind/releases/download/v0.29.0/kind-linux-amd64"
        );
    }

    #[test]
    fn versions_are_normalized_and_never_paths() {
        assert_eq!(Tool::Istio.normalize_version("v1.30.3").unwrap(), "1.30.3");
        assert_eq!(Tool::Kind.normalize_version("0.29.0").unwrap(), "v0.29.0");
        assert_eq!(
            Tool::Istio.normalize_version("1.31.0-beta.1").unwrap(),
            "1.31.0-beta.1"
        );
        for bad in ["", "../1.2", "1.2/3", "latest", "1..2"] {
            assert!(Tool::Istio.normalize_version(bad).is_err(), "{bad}");
        }
    }
}
