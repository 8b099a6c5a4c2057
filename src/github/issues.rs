//! The issues mdb filed, found again by the fingerprint in their body: read
//! once, then kept up to date by every write. Creating looks for the issue
//! before sending again when an answer was lost. Used by the sweep's filer
//! and by the provisioning runner alike.

use std::collections::HashMap;

use serde_json::{json, Value};
use tracing::info;

use crate::github::{
    fingerprint::Fingerprint,
    http::{Error, Http, Method, MAX_ATTEMPTS},
    plan::Known,
    trust::{Owner, Trailer},
    MAX_PAGES,
};

pub struct IssueBook {
    repo: String,
    /// Fingerprint → issue, loaded from GitHub at the first use.
    pub known: HashMap<Fingerprint, Known>,
    pub loaded: bool,
}

impl IssueBook {
    pub fn new(repo: &str) -> IssueBook {
        IssueBook {
            repo: repo.to_string(),
            known: HashMap::new(),
            loaded: false,
        }
    }

    fn issues_path(&self) -> String {
        format!("/repos/{}/issues", self.repo)
    }

    /// Reads every issue of the repository and keeps those mdb filed: by
    /// the token's own user, with a fingerprint in the trailer.
    pub async fn load(&mut self, http: &mut Http) -> Result<(), Error> {
        let owner = Owner {
            login: http.login().await?,
            repo: self.repo.clone(),
        };
        let mut known: HashMap<Fingerprint, Known> = HashMap::new();
        for page in 1..=MAX_PAGES {
            let path = format!(
                "{}?state=all&per_page=100&page={page}&sort=created&direction=asc",
                self.issues_path()
            );
            let v = http.request(Method::Get, &path, None, true).await?;
            let items = v.as_array().ok_or_else(|| Error::Decode {
                what: "issue list".into(),
                message: "not a list".into(),
            })?;
            for i in items.iter().filter(|i| owner.owns_issue(i)) {
                let trailer = Trailer::read(i["body"].as_str().unwrap_or_default());
                let (Some(fp), Some(number)) = (trailer.fingerprint, i["number"].as_u64()) else {
                    continue;
                };
                let k = Known {
                    number,
                    open: i["state"] == "open",
                    ip: trailer.ip.unwrap_or_default(),
                    waiting: trailer.reserved,
                };
                // Should duplicates exist (filed by hand, or before mdb
                // looked), an open one wins, then the newest.
                let keep = known.get(&fp).is_none_or(|old| {
                    (k.open && !old.open) || (k.open == old.open && k.number > old.number)
                });
                if keep {
                    known.insert(fp, k);
                }
            }
            if items.len() < 100 {
                break;
            }
        }
        self.known = known;
        self.loaded = true;
        Ok(())
    }

    pub async fn load_once(&mut self, http: &mut Http) -> Result<(), Error> {
        if !self.loaded {
            self.load(http).await?;
        }
        Ok(())
    }

    /// Opens an issue (`fields`: title, body, labels...). A create whose
    /// answer was lost is looked for before it is sent again.
    pub async fn create(
        &mut self,
        http: &mut Http,
        fp: &Fingerprint,
        fields: Value,
    ) -> Result<u64, Error> {
        let path = self.issues_path();
        for attempt in 1..=MAX_ATTEMPTS {
            match http
                .request(Method::Post, &path, Some(fields.clone()), false)
                .await
            {
                Ok(v) => {
                    return v["number"].as_u64().ok_or_else(|| Error::Decode {
                        what: "created issue".into(),
                        message: "no number".into(),
                    })
                }
                Err(Error::Transient { .. }) if attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(http.retry_base * 2u32.pow(attempt - 1)).await;
                    self.load(http).await?;
                    if let Some(k) = self.known.get(fp) {
                        info!(issue = k.number, fingerprint = %fp, "issue was created although GitHub's answer was lost");
                        return Ok(k.number);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Transient {
            what: format!("POST {path}"),
            message: "gave up".into(),
        })
    }

    pub async fn comment(&self, http: &mut Http, number: u64, text: &str) -> Result<(), Error> {
        let path = format!("{}/{number}/comments", self.issues_path());
        http.request(Method::Post, &path, Some(json!({ "body": text })), true)
            .await?;
        Ok(())
    }

    pub async fn set(&self, http: &mut Http, number: u64, fields: Value) -> Result<(), Error> {
        let path = format!("{}/{number}", self.issues_path());
        http.request(Method::Patch, &path, Some(fields), true)
            .await?;
        Ok(())
    }

    /// Records an issue that is open now.
    pub fn opened(&mut self, fp: Fingerprint, number: u64, ip: &str) {
        self.known.insert(
            fp,
            Known {
                number,
                open: true,
                ip: ip.to_string(),
                waiting: None,
            },
        );
    }
}
