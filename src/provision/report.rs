//! Provisioning problems on GitHub: one issue per machine or cluster whose
//! readiness check or run failed, carrying the reason (the failing check,
//! or the failing command and the end of its output); a comment when the
//! reason changes; closed with a comment when a later run succeeds.

use std::collections::HashMap;

use serde_json::json;
use tracing::info;

use crate::{
    db::policy::Treatment,
    escape::{markdown, markdown_block},
    github::{
        fingerprint::{Fingerprint, Kind, Subject},
        http::{Error, Http},
        issues::IssueBook,
        metrics::GithubMetrics,
        trust::Trailer,
        Config,
    },
    proto::{ProvisionResult, ProvisionStatus},
};

pub struct Reporter {
    http: Http,
    book: IssueBook,
    labels: Vec<String>,
    /// The reason each open issue last reported.
    reasons: HashMap<Fingerprint, String>,
}

fn fingerprint(s: &ProvisionStatus) -> Fingerprint {
    Fingerprint {
        kind: Kind::Provisioning,
        subject: if s.cluster {
            Subject::Cluster(s.target.clone())
        } else {
            Subject::Machine(s.target.clone())
        },
    }
}

fn what(s: &ProvisionStatus) -> String {
    if s.cluster {
        format!("cluster {}", s.target)
    } else {
        s.target.clone()
    }
}

/// The issue body: the reason and the output come from the machine and
/// the command (a device's sshd, a playbook's task), so both are escaped.
fn body(s: &ProvisionStatus, fp: &Fingerprint) -> String {
    let mut b = format!(
        "mdb's provisioning runner cannot provision **{}**:\n\n> {}\n\n",
        what(s),
        markdown(&s.reason)
    );
    if s.result == ProvisionResult::HostKeyChanged as i32 {
        b.push_str("No session is made with a machine that offers another host key than its own: a device that took its MAC or address gets nothing. If the machine was reinstalled, put the key it offers now in its entry (`ssh: { host_keys: [...] }`, as `ssh-keyscan` prints it); a key in the database is pinned instead of the one first seen.\n\n");
    }
    if !s.output_tail.is_empty() {
        b.push_str("The end of the run's output:\n\n");
        b.push_str(&markdown_block(&s.output_tail));
        b.push('\n');
    }
    b.push_str(&format!("Attempts so far: {}. The runner tries again with backoff and closes this issue when a run succeeds.\n\n", s.attempts));
    b.push_str(
        &Trailer {
            fingerprint: Some(fp.clone()),
            ..Trailer::default()
        }
        .write(),
    );
    b
}

impl Reporter {
    pub fn new(cfg: &Config, metrics: GithubMetrics) -> Result<Reporter, Error> {
        let mut labels = cfg.labels.clone();
        labels.push(Kind::Provisioning.word().to_string());
        Ok(Reporter {
            http: Http::new(cfg, metrics)?,
            book: IssueBook::new(&cfg.repo),
            labels,
            reasons: HashMap::new(),
        })
    }

    /// Brings the issues in line with the statuses after a pass.
    pub async fn report(&mut self, statuses: &[ProvisionStatus]) -> Result<(), Error> {
        self.book.load_once(&mut self.http).await?;
        for s in statuses {
            let fp = fingerprint(s);
            let known = self.book.known.get(&fp).cloned();
            let result = ProvisionResult::try_from(s.result);
            // A machine judged by its readiness checks alone is watched, not
            // provisioned: its absence is a missing machine's issue, if any.
            let watched_only = s.treatment == Treatment::Readiness.word();
            match result {
                Ok(ProvisionResult::HostKeyChanged) => self.failing(s, fp, known).await?,
                Ok(ProvisionResult::Failed | ProvisionResult::NotReady) if !watched_only => {
                    self.failing(s, fp, known).await?
                }
                Ok(
                    ProvisionResult::Ok
                    | ProvisionResult::Ready
                    | ProvisionResult::Skipped
                    | ProvisionResult::NoAddress
                    | ProvisionResult::Failed
                    | ProvisionResult::NotReady,
                ) => {
                    if let Some(k) = known.filter(|k| k.open) {
                        let text = match result {
                            Ok(ProvisionResult::Ok) => {
                                format!("Provisioned at revision {}. Closing.", s.applied_revision)
                            }
                            _ => format!(
                                "Nothing to provision here any more: it is {} now (the DB's policy: {}). Closing.",
                                crate::db::words::provision_result_name(s.result),
                                markdown(&s.treatment)
                            ),
                        };
                        self.book.comment(&mut self.http, k.number, &text).await?;
                        self.book
                            .set(
                                &mut self.http,
                                k.number,
                                json!({ "state": "closed", "state_reason": "completed" }),
                            )
                            .await?;
                        if let Some(k) = self.book.known.get_mut(&fp) {
                            k.open = false;
                        }
                        self.reasons.remove(&fp);
                        info!(issue = k.number, target = %s.target, "provisioning issue closed");
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn failing(
        &mut self,
        s: &ProvisionStatus,
        fp: Fingerprint,
        known: Option<crate::github::plan::Known>,
    ) -> Result<(), Error> {
        let title = format!("Cannot provision {}", what(s));
        match known {
            None => {
                let fields = json!({ "title": title, "body": body(s, &fp), "labels": self.labels });
                let number = self.book.create(&mut self.http, &fp, fields).await?;
                info!(issue = number, target = %s.target, "provisioning issue filed");
                self.book.opened(fp.clone(), number, "");
            }
            Some(k) if !k.open => {
                self.book
                    .set(
                        &mut self.http,
                        k.number,
                        json!({ "state": "open", "body": body(s, &fp) }),
                    )
                    .await?;
                let text = format!("It fails again: {}", markdown(&s.reason));
                self.book.comment(&mut self.http, k.number, &text).await?;
                self.book.opened(fp.clone(), k.number, "");
            }
            Some(k) => {
                if self.reasons.get(&fp).is_some_and(|r| *r != s.reason) {
                    let text = format!("Now: {}", markdown(&s.reason));
                    self.book.comment(&mut self.http, k.number, &text).await?;
                    self.book
                        .set(&mut self.http, k.number, json!({ "body": body(s, &fp) }))
                        .await?;
                }
            }
        }
        self.reasons.insert(fp, s.reason.clone());
        Ok(())
    }
}
