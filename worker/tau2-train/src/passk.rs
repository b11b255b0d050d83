//! pass@k and pass^k, per domain and overall (ml.md §d, cookbook §6).
//!
//! For a task with `n` samples of which `c` succeeded (success: task reward
//! within 1e-6 of 1, as tau2 counts), averaged over tasks (each task weighs
//! the same, also overall: the model card's micro average):
//! * pass@1: the first sample succeeded (the model card's pass@1);
//! * pass@1 (unbiased): `c / n`;
//! * pass@k: any of the first k samples succeeded (the model card's pass@k);
//! * pass@k (unbiased): `1 - C(n-c, k) / C(n, k)` (Chen et al. 2021);
//! * pass^k: `C(c, k) / C(n, k)`, the chance that k samples all succeed
//!   (tau2-bench's leaderboard `pass_hat_k`);
//! * average reward: the mean task reward over all samples.
//!
//! The field names match the proto `PassRates` and the CRD's status
//! `results`, into which [`EvalResults`] converts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tau2_api::bench::{Domain, Split};

/// The definitions, keyed by field name, written next to the numbers.
pub const DEFINITIONS: [(&str, &str); 6] = [
    (
        "passAt1",
        "share of tasks whose first sample succeeded (reward 1); the model card's pass@1",
    ),
    (
        "passAt1Unbiased",
        "mean over tasks of c/n, the success rate over all n samples",
    ),
    (
        "passAtK",
        "share of tasks with a success among the first k samples; the model card's pass@k",
    ),
    (
        "passAtKUnbiased",
        "mean over tasks of 1 - C(n-c,k)/C(n,k), the unbiased pass@k estimator (Chen et al. 2021)",
    ),
    (
        "passHatK",
        "mean over tasks of C(c,k)/C(n,k), the chance that k samples all succeed; tau2-bench's pass^k",
    ),
    ("averageReward", "mean task reward over all samples"),
];

/// Why pass rates cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PassKError {
    #[error("k must be at least 1")]
    ZeroK,
    #[error("task {task} has {n} samples, fewer than k = {k}")]
    TooFewSamples { task: String, n: usize, k: usize },
    #[error("no tasks to score")]
    NoTasks,
}

/// The samples of one task, in sampling order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSamples {
    pub domain: Domain,
    pub task_id: String,
    /// Task rewards, sample 0 first.
    pub rewards: Vec<f64>,
}

impl TaskSamples {
    pub fn successes(&self) -> usize {
        self.rewards.iter().filter(|r| is_success(**r)).count()
    }
}

/// Success as tau2 counts it.
pub fn is_success(reward: f64) -> bool {
    (reward - 1.0).abs() < 1e-6
}

/// `1 - C(n-c, k) / C(n, k)`, in the numerically stable product form.
pub fn pass_at_k_unbiased(n: usize, c: usize, k: usize) -> f64 {
    if n.saturating_sub(c) < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

/// `C(c, k) / C(n, k)` = `prod_{i<k} (c-i)/(n-i)`; 0 when c < k.
pub fn pass_hat_k(n: usize, c: usize, k: usize) -> f64 {
    if c < k {
        return 0.0;
    }
    (0..k).map(|i| (c - i) as f64 / (n - i) as f64).product()
}

/// Pass rates over a set of tasks (see the module docs).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassRates {
    pub tasks: u32,
    pub pass_at1: f64,
    pub pass_at1_unbiased: f64,
    pub pass_at_k: f64,
    pub pass_at_k_unbiased: f64,
    pub pass_hat_k: f64,
    pub average_reward: f64,
    /// pass^j for j = 1..=(fewest samples of a task), as tau2 reports the curve.
    #[serde(default)]
    pub pass_hat_curve: Vec<f64>,
}

/// Pass rates of the given tasks.
pub fn pass_rates(tasks: &[&TaskSamples], k: usize) -> Result<PassRates, PassKError> {
    if k == 0 {
        return Err(PassKError::ZeroK);
    }
    if tasks.is_empty() {
        return Err(PassKError::NoTasks);
    }
    let min_n = tasks.iter().map(|t| t.rewards.len()).min().unwrap_or(0);
    if let Some(t) = tasks.iter().find(|t| t.rewards.len() < k) {
        return Err(PassKError::TooFewSamples {
            task: t.task_id.clone(),
            n: t.rewards.len(),
            k,
        });
    }
    let count = tasks.len() as f64;
    let mean = |f: &dyn Fn(&TaskSamples) -> f64| tasks.iter().map(|t| f(t)).sum::<f64>() / count;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    Ok(PassRates {
        tasks: tasks.len() as u32,
        pass_at1: mean(&|t| flag(is_success(t.rewards[0]))),
        pass_at1_unbiased: mean(&|t| t.successes() as f64 / t.rewards.len() as f64),
        pass_at_k: mean(&|t| flag(t.rewards[..k].iter().any(|r| is_success(*r)))),
        pass_at_k_unbiased: mean(&|t| pass_at_k_unbiased(t.rewards.len(), t.successes(), k)),
        pass_hat_k: mean(&|t| pass_hat_k(t.rewards.len(), t.successes(), k)),
        average_reward: mean(&|t| t.rewards.iter().sum::<f64>() / t.rewards.len() as f64),
        pass_hat_curve: (1..=min_n)
            .map(|j| mean(&|t| pass_hat_k(t.rewards.len(), t.successes(), j)))
            .collect(),
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainPassRates {
    pub domain: Domain,
    #[serde(flatten)]
    pub rates: PassRates,
}

/// An evaluation's numbers, with their definitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalResults {
    pub split: Split,
    pub k: u32,
    /// Samples per task (the fewest, if tasks differ).
    pub samples_per_task: u32,
    /// All tasks of all domains, each task weighing the same.
    pub overall: PassRates,
    pub domains: Vec<DomainPassRates>,
    pub definitions: BTreeMap<String, String>,
}

impl EvalResults {
    /// Per domain (in [`Domain::ALL`] order) and overall.
    pub fn compute(split: Split, k: usize, tasks: &[TaskSamples]) -> Result<Self, PassKError> {
        let all: Vec<&TaskSamples> = tasks.iter().collect();
        let overall = pass_rates(&all, k)?;
        let mut domains = Vec::new();
        for domain in Domain::ALL {
            let of: Vec<&TaskSamples> = tasks.iter().filter(|t| t.domain == domain).collect();
            if !of.is_empty() {
                domains.push(DomainPassRates {
                    domain,
                    rates: pass_rates(&of, k)?,
                });
            }
        }
        Ok(Self {
            split,
            k: k as u32,
            samples_per_task: tasks.iter().map(|t| t.rewards.len()).min().unwrap_or(0) as u32,
            overall,
            domains,
            definitions: DEFINITIONS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// A plain-text table, one row per domain and one overall.
    pub fn table(&self) -> String {
        let k = self.k;
        let mut out = format!(
            "{:<9} {:>5} {:>7} {:>9} {:>7} {:>9} {:>7} {:>8}\n",
            "domain",
            "tasks",
            "pass@1",
            "pass@1 u",
            format!("pass@{k}"),
            format!("pass@{k} u"),
            format!("pass^{k}"),
            "reward"
        );
        let row = |name: &str, r: &PassRates| {
            format!(
                "{:<9} {:>5} {:>7.3} {:>9.3} {:>7.3} {:>9.3} {:>7.3} {:>8.3}\n",
                name,
                r.tasks,
                r.pass_at1,
                r.pass_at1_unbiased,
                r.pass_at_k,
                r.pass_at_k_unbiased,
                r.pass_hat_k,
                r.average_reward
            )
        };
        for d in &self.domains {
            out.push_str(&row(d.domain.as_str(), &d.rates));
        }
        out.push_str(&row("overall", &self.overall));
        out.push_str(&format!(
            "pass@1 = first sample; u = unbiased over all {} samples; pass@{k} = any of the first {k}; pass^{k} = all {k} succeed (tau2 leaderboard)\n",
            self.samples_per_task
        ));
        out
    }
}

fn proto_rates(domain: &str, r: &PassRates) -> tau2_api::progress::PassRates {
    tau2_api::progress::PassRates {
        domain: domain.to_string(),
        tasks: r.tasks,
        pass_at1: r.pass_at1,
        pass_at1_unbiased: r.pass_at1_unbiased,
        pass_at_k: r.pass_at_k,
        pass_at_k_unbiased: r.pass_at_k_unbiased,
        pass_hat_k: r.pass_hat_k,
        average_reward: r.average_reward,
    }
}

/// What the progress client reports to the operator.
impl From<&EvalResults> for tau2_api::progress::Results {
    fn from(r: &EvalResults) -> Self {
        Self {
            split: r.split.as_str().to_string(),
            k: r.k,
            samples_per_task: r.samples_per_task,
            overall: Some(proto_rates("", &r.overall)),
            domains: r
                .domains
                .iter()
                .map(|d| proto_rates(d.domain.as_str(), &d.rates))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(domain: Domain, id: &str, rewards: &[f64]) -> TaskSamples {
        TaskSamples {
            domain,
            task_id: id.into(),
            rewards: rewards.to_vec(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn estimators_on_hand_computed_cases() {
        // n=4, c=1, k=4: any of 4 is certain; all of 4 impossible.
        assert!(close(pass_at_k_unbiased(4, 1, 4), 1.0));
        assert!(close(pass_hat_k(4, 1, 4), 0.0));
        // n=4, c=1, k=1: 1/4 both ways.
        assert!(close(pass_at_k_unbiased(4, 1, 1), 0.25));
        assert!(close(pass_hat_k(4, 1, 1), 0.25));
        // n=4, c=2, k=2: 1 - C(2,2)/C(4,2) = 5/6; C(2,2)/C(4,2) = 1/6.
        assert!(close(pass_at_k_unbiased(4, 2, 2), 5.0 / 6.0));
        assert!(close(pass_hat_k(4, 2, 2), 1.0 / 6.0));
        // n=4, c=3, k=2: 1 - 0 = 1; C(3,2)/C(4,2) = 3/6.
        assert!(close(pass_at_k_unbiased(4, 3, 2), 1.0));
        assert!(close(pass_hat_k(4, 3, 2), 0.5));
        // n=5, c=2, k=3: 1 - C(3,3)/C(5,3) = 9/10.
        assert!(close(pass_at_k_unbiased(5, 2, 3), 0.9));
        // c = n: both 1; c = 0: both 0.
        assert!(close(pass_at_k_unbiased(4, 4, 3), 1.0) && close(pass_hat_k(4, 4, 3), 1.0));
        assert!(close(pass_at_k_unbiased(4, 0, 3), 0.0) && close(pass_hat_k(4, 0, 3), 0.0));
    }

    #[test]
    fn rates_per_domain_and_overall() -> Result<(), PassKError> {
        let tasks = vec![
            // First sample fails, one later success.
            task(Domain::Airline, "a0", &[0.0, 0.0, 1.0, 0.0]),
            // First succeeds, two successes.
            task(Domain::Airline, "a1", &[1.0, 0.0, 1.0, 0.0]),
            // All succeed.
            task(Domain::Retail, "r0", &[1.0, 1.0, 1.0, 1.0]),
            // Partial rewards are not successes, but count in the average reward.
            task(Domain::Retail, "r1", &[0.5, 0.0, 0.0, 0.0]),
        ];
        let r = EvalResults::compute(Split::Test, 2, &tasks)?;
        let airline = &r.domains[0].rates;
        assert_eq!(r.domains[0].domain, Domain::Airline);
        assert!(close(airline.pass_at1, 0.5));
        assert!(close(airline.pass_at1_unbiased, (0.25 + 0.5) / 2.0));
        // Any of the first 2: a0 no, a1 yes.
        assert!(close(airline.pass_at_k, 0.5));
        // a0: 1 - C(3,2)/C(4,2) = 1/2; a1: 5/6.
        assert!(close(airline.pass_at_k_unbiased, (0.5 + 5.0 / 6.0) / 2.0));
        // a0: 0; a1: 1/6.
        assert!(close(airline.pass_hat_k, (1.0 / 6.0) / 2.0));
        assert!(close(airline.average_reward, (0.25 + 0.5) / 2.0));
        let retail = &r.domains[1].rates;
        assert!(close(retail.pass_at1, 0.5));
        assert!(close(retail.pass_hat_k, 0.5));
        assert!(close(retail.average_reward, (1.0 + 0.125) / 2.0));
        // Overall: each task weighs the same.
        assert_eq!(r.overall.tasks, 4);
        assert!(close(r.overall.pass_at1, 0.5));
        assert!(close(
            r.overall.pass_at_k_unbiased,
            (0.5 + 5.0 / 6.0 + 1.0 + 0.0) / 4.0
        ));
        // pass^1 is the unbiased pass@1; the curve runs to n = 4.
        assert_eq!(r.overall.pass_hat_curve.len(), 4);
        assert!(close(
            r.overall.pass_hat_curve[0],
            r.overall.pass_at1_unbiased
        ));
        assert!(close(r.overall.pass_hat_curve[3], 0.25));
        let proto = tau2_api::progress::Results::from(&r);
        assert_eq!((proto.k, proto.samples_per_task), (2, 4));
        assert_eq!(proto.domains[1].domain, "retail");
        assert!(r.table().contains("pass^2"));
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() {
        let t = task(Domain::Mock, "m", &[1.0]);
        assert_eq!(
            pass_rates(&[&t], 2),
            Err(PassKError::TooFewSamples {
                task: "m".into(),
                n: 1,
                k: 2
            })
        );
        assert_eq!(pass_rates(&[&t], 0), Err(PassKError::ZeroK));
        assert_eq!(pass_rates(&[], 1), Err(PassKError::NoTasks));
    }
}
