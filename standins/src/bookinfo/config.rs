//! STAND-IN configuration: which Bookinfo app to play (from the command line the image's CMD
//! gives) and the environment the real apps read (`productpage.py`'s `SERVICES_DOMAIN` and
//! `*_HOSTNAME`, the reviews Dockerfile's and `LibertyRestEndpoint.java`'s `ENABLE_RATINGS`
//! and `STAR_COLOR`), plus the stand-in-only overrides that let tests wire the apps together
//! on ephemeral ports.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use super::Error;

/// The port every Bookinfo app listens on and calls the others on.
pub const PORT: u16 = 9080;

/// A `reviews` version: what its image's build arguments set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewsVersion {
    /// No ratings.
    V1,
    /// Ratings as black stars.
    V2,
    /// Ratings as red stars.
    V3,
}

impl ReviewsVersion {
    /// `ENABLE_RATINGS` and `STAR_COLOR` as the reviews image of this version sets them.
    pub fn defaults(self) -> (bool, &'static str) {
        match self {
            ReviewsVersion::V1 => (false, "black"),
            ReviewsVersion::V2 => (true, "black"),
            ReviewsVersion::V3 => (true, "red"),
        }
    }
}

/// Which Bookinfo app this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The web page (Python/Flask in the real sample).
    ProductPage,
    /// Book details (Ruby/WEBrick).
    Details,
    /// Book reviews (Java/Liberty), in one of three versions.
    Reviews(ReviewsVersion),
    /// Book ratings (Node.js).
    Ratings,
}

impl Role {
    /// Reads `ROLE [VERSION]` (the arguments after the program name).
    pub fn from_args(args: &[String]) -> Result<Role, Error> {
        let usage = |msg: String| Err(Error::Usage(msg));
        let (role, version) = match args {
            [role] => (role.as_str(), None),
            [role, version] => (role.as_str(), Some(version.as_str())),
            _ => return usage(format!("expected 1 or 2 arguments, got {}", args.len())),
        };
        match (role, version) {
            ("reviews", None | Some("v1")) => Ok(Role::Reviews(ReviewsVersion::V1)),
            ("reviews", Some("v2")) => Ok(Role::Reviews(ReviewsVersion::V2)),
            ("reviews", Some("v3")) => Ok(Role::Reviews(ReviewsVersion::V3)),
            ("productpage", None | Some("v1")) => Ok(Role::ProductPage),
            ("details", None | Some("v1")) => Ok(Role::Details),
            ("ratings", None | Some("v1")) => Ok(Role::Ratings),
            (role, Some(v)) => usage(format!("no stand-in for {role} version {v}")),
            (role, None) => usage(format!("no stand-in for a Bookinfo app named {role:?}")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::ProductPage => f.write_str("productpage"),
            Role::Details => f.write_str("details"),
            Role::Reviews(ReviewsVersion::V1) => f.write_str("reviews-v1"),
            Role::Reviews(ReviewsVersion::V2) => f.write_str("reviews-v2"),
            Role::Reviews(ReviewsVersion::V3) => f.write_str("reviews-v3"),
            Role::Ratings => f.write_str("ratings"),
        }
    }
}

/// Everything a role needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The app played.
    pub role: Role,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Base URL of `details`, e.g. `http://details:9080`.
    pub details_url: String,
    /// Base URL of `reviews`.
    pub reviews_url: String,
    /// Base URL of `ratings`.
    pub ratings_url: String,
    /// `reviews` only: whether to call `ratings` and show stars.
    pub enable_ratings: bool,
    /// `reviews` only: the stars' colour.
    pub star_color: String,
    /// `reviews` only: the pod name it reports (`HOSTNAME`).
    pub pod_name: Option<String>,
    /// `reviews` only: the cluster name it reports (`CLUSTER_NAME`).
    pub cluster_name: Option<String>,
}

impl Config {
    /// The configuration of `role` from the environment `env` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_env(role: Role, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let domain = env("SERVICES_DOMAIN").map_or(String::new(), |d| format!(".{d}"));
        let url = |override_var: &str, host_var: &str, default_host: &str| {
            env(override_var).unwrap_or_else(|| {
                let host = env(host_var).unwrap_or_else(|| default_host.to_string());
                format!("http://{host}{domain}:{PORT}")
            })
        };
        let (ratings_default, color_default) = match role {
            Role::Reviews(v) => v.defaults(),
            _ => (false, "black"),
        };
        let enable_ratings = env("ENABLE_RATINGS")
            // Java's Boolean.valueOf: true only for "true", in any case.
            .map_or(ratings_default, |v| v.eq_ignore_ascii_case("true"));
        Ok(Config {
            role,
            listen: listen_addr(&env)?,
            details_url: url("BOOKINFO_DETAILS_URL", "DETAILS_HOSTNAME", "details"),
            reviews_url: url("BOOKINFO_REVIEWS_URL", "REVIEWS_HOSTNAME", "reviews"),
            ratings_url: url("BOOKINFO_RATINGS_URL", "RATINGS_HOSTNAME", "ratings"),
            enable_ratings,
            star_color: env("STAR_COLOR").unwrap_or_else(|| color_default.to_string()),
            pod_name: env("HOSTNAME"),
            cluster_name: env("CLUSTER_NAME"),
        })
    }
}

fn listen_addr(env: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, Error> {
    if let Some(value) = env("BOOKINFO_LISTEN") {
        return value.parse().map_err(|e| Error::Env {
            name: "BOOKINFO_LISTEN",
            reason: format!("{e}; expected an address like 127.0.0.1:9080"),
            value,
        });
    }
    let port = match env("PORT") {
        None => PORT,
        Some(value) => value.parse().map_err(|e| Error::Env {
            name: "PORT",
            reason: format!("{e}; expected a port number"),
            value,
        })?,
    };
    Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn config(role: Role, vars: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(role, |k| vars.get(k).cloned())
    }

    #[test]
    fn roles_from_the_command_line() {
        assert_eq!(
            Role::from_args(&args(&["productpage"])).unwrap(),
            Role::ProductPage
        );
        assert_eq!(
            Role::from_args(&args(&["reviews", "v3"])).unwrap(),
            Role::Reviews(ReviewsVersion::V3)
        );
        assert_eq!(
            Role::from_args(&args(&["ratings", "v1"])).unwrap(),
            Role::Ratings
        );
        let err = Role::from_args(&args(&["reviews", "v4"])).unwrap_err();
        assert!(err.to_string().contains("reviews version v4"), "{err}");
        assert!(Role::from_args(&args(&["mongodb"])).is_err());
        assert!(Role::from_args(&[]).is_err());
    }

    #[test]
    fn defaults_are_the_real_apps() {
        let c = config(Role::ProductPage, &[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9080".parse().unwrap());
        assert_eq!(c.details_url, "http://details:9080");
        assert_eq!(c.reviews_url, "http://reviews:9080");
        assert_eq!(c.ratings_url, "http://ratings:9080");
        assert!(!c.enable_ratings);
    }

    #[test]
    fn reviews_versions_set_ratings_and_colour() {
        let v1 = config(Role::Reviews(ReviewsVersion::V1), &[]).unwrap();
        assert!(!v1.enable_ratings);
        let v2 = config(Role::Reviews(ReviewsVersion::V2), &[]).unwrap();
        assert!(v2.enable_ratings);
        assert_eq!(v2.star_color, "black");
        let v3 = config(Role::Reviews(ReviewsVersion::V3), &[]).unwrap();
        assert_eq!((v3.enable_ratings, v3.star_color.as_str()), (true, "red"));
        let env = [("ENABLE_RATINGS", "TRUE"), ("STAR_COLOR", "blue")];
        let v1_on = config(Role::Reviews(ReviewsVersion::V1), &env).unwrap();
        assert_eq!(
            (v1_on.enable_ratings, v1_on.star_color.as_str()),
            (true, "blue")
        );
    }

    #[test]
    fn host_names_domain_and_overrides() {
        let env = [
            ("SERVICES_DOMAIN", "bookinfo.svc.cluster.local"),
            ("DETAILS_HOSTNAME", "details-x"),
            ("BOOKINFO_REVIEWS_URL", "http://127.0.0.1:4000"),
            ("PORT", "9999"),
        ];
        let c = config(Role::ProductPage, &env).unwrap();
        assert_eq!(
            c.details_url,
            "http://details-x.bookinfo.svc.cluster.local:9080"
        );
        assert_eq!(c.reviews_url, "http://127.0.0.1:4000");
        assert_eq!(
            c.ratings_url,
            "http://ratings.bookinfo.svc.cluster.local:9080"
        );
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn bad_listen_values_are_named() {
        let err = config(Role::Details, &[("PORT", "http")]).unwrap_err();
        assert!(err.to_string().contains("PORT=\"http\""), "{err}");
        let err = config(Role::Details, &[("BOOKINFO_LISTEN", "9080")]).unwrap_err();
        assert!(err.to_string().contains("BOOKINFO_LISTEN"), "{err}");
        let ok = config(Role::Details, &[("BOOKINFO_LISTEN", "127.0.0.1:0")]).unwrap();
        assert_eq!(ok.listen, "127.0.0.1:0".parse().unwrap());
    }
}
