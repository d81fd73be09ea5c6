//! The README's quickstart, end to end: `up`, apply examples/web.yaml, pods answer on their IPs,
//! logs (also followed), describe with events, delete leaves nothing on the host.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{http_get, repo_root, Cluster};

#[test]
fn quickstart_runs_the_web_example_and_cleans_up() {
    let mut cluster = Cluster::up("quickstart");
    let web = repo_root().join("examples/web.yaml");
    let web = web.to_str().unwrap();

    let applied = cluster.run_ok(&["apply", "-f", web]);
    assert!(applied.contains("deployment.apps/web created"), "{applied}");
    let rollout = cluster.run_ok(&["rollout", "status", "deployment/web", "--timeout", "90s"]);
    assert!(rollout.contains("successfully rolled out"), "{rollout}");
    let pods = cluster.wait_ready("app=web", 3, Duration::from_secs(30));

    // The table a user reads, with the wide columns.
    let table = cluster.run_ok(&["get", "pods", "-o", "wide"]);
    let header = table.lines().next().unwrap();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.contains(column), "missing {column} in {header}");
    }
    assert_eq!(table.lines().filter(|l| l.contains("1/1") && l.contains("Running") && l.contains(&cluster.node)).count(), 3, "{table}");

    // Every pod answers on its own IP, from the host.
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().expect("pod IP in status");
        let name = pod["metadata"]["name"].as_str().unwrap();
        let body = http_get(ip, 8080, "/").unwrap_or_else(|e| panic!("GET http://{ip}:8080/ failed: {e}"));
        assert_eq!(body.trim(), format!("hello from {name}"), "the pod's hostname is its name");
    }

    // The Service's cluster IP answers from the host, from one of the replicas.
    let service: serde_json::Value = serde_json::from_str(&cluster.run_ok(&["get", "service", "web", "-o", "json"])).unwrap();
    let vip = service["spec"]["clusterIP"].as_str().expect("the Service has a cluster IP").to_string();
    let names: Vec<String> = pods.iter().map(|p| format!("hello from {}", p["metadata"]["name"].as_str().unwrap())).collect();
    let body = common::wait_for(Duration::from_secs(10), "the cluster IP to answer", || http_get(&vip, 80, "/").ok());
    assert!(names.contains(&body.trim().to_string()), "GET http://{vip}/ answered {body:?}, not one of {names:?}");

    // Logs: what the container printed, and -f follows new lines (httpd -v logs each response;
    // only the request below gets a 404).
    let pod = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    let logs = cluster.run_ok(&["logs", &pod]);
    assert!(logs.contains("serving /srv on :8080"), "{logs}");
    let mut follow = cluster.command(&["logs", "-f", &pod]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("serving /srv"));
    http_get(&ip, 8080, "/followed").unwrap_err();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("logs -f ended").unwrap();
        if line.contains("response:404") {
            break;
        }
        seen.push(line);
        assert!(Instant::now() < deadline, "logs -f did not show the new request; it printed:\n{}", seen.join("\n"));
    }
    follow.kill().unwrap();
    follow.wait().unwrap();

    // describe shows what happened to the pod.
    let described = cluster.run_ok(&["describe", "pod", &pod]);
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(described.contains(reason), "describe lacks the {reason} event:\n{described}");
    }

    // -o json prints Kubernetes shapes: a List with items.
    let list: serde_json::Value = serde_json::from_str(&cluster.run_ok(&["get", "deployments", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "Deployment");
    assert_eq!(list["items"][0]["status"]["readyReplicas"], 3);

    // Delete waits until the pods are gone; nothing is left on the host.
    cluster.pods(None);
    let deleted = cluster.run_ok(&["delete", "-f", web]);
    assert!(deleted.contains("deployment.apps/web deleted") && deleted.contains("service/web deleted"), "{deleted}");
    common::wait_for(Duration::from_secs(30), "the pods to be gone", || cluster.pods(None).is_empty().then_some(()));
    assert!(!cluster.pod_uids.is_empty());
    cluster.assert_host_clean();
}
