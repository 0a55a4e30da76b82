//! The stand-in istiod's CA and serving certificate, made at start (istiod makes a self-signed
//! CA too when no `cacerts` secret exists: `security/pkg/pki/ca/ca.go`), with the DNS names the
//! webhook's Service answers to.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A CA and a serving certificate it signed, all in PEM.
#[derive(Clone)]
pub struct Certs {
    /// The CA certificate (the webhook's `caBundle`, the `istio-ca-root-cert` ConfigMap).
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's key.
    pub key_pem: String,
}

impl Certs {
    /// A fresh CA and a certificate for `service.namespace.svc` (and its shorter names).
    pub fn new(service: &str, namespace: &str) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::OrganizationName, "cluster.local");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let names = vec![
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        let key = KeyPair::generate()?;
        let leaf = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
        Ok(Certs {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
