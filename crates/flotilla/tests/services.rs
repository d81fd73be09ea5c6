//! Services through the binary, on real pods: a Deployment of three web pods and one pod that
//! never becomes ready behind a ClusterIP Service and a NodePort Service. A client pod fetches
//! the cluster IP all along, each line stamped with the shared uptime clock. Connections reach
//! only ready pods and spread over all of them; the node itself reaches the cluster IP and the
//! node port; a deleted pod gets no new connection a second after its deletion; and ClientIP
//! affinity, switched on, keeps the client on one pod.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use common::{wait_for, Cluster, IMAGE};

fn web() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: {IMAGE}
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: spare, labels: {{app: web, role: spare}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 8000, targetPort: 8080}}]
"#
    )
}

fn client(vip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{app: client}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "while true; do t=$(cut -d' ' -f1 /proc/uptime); if body=$(timeout 1 wget -q -O - http://{vip}/); then echo \"$t $body\"; else echo \"$t fail\"; fi; sleep 0.05; done"]
"#
    )
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap()
}

/// What the client's fetches that began at or after `since` got: a pod name, or "fail".
fn answers(cluster: &Cluster, since: f64) -> Vec<String> {
    let logs = cluster.try_run(&["logs", "client"]).unwrap_or_default();
    logs.lines()
        .filter_map(|line| {
            let (t, answer) = line.split_once(' ')?;
            (t.parse::<f64>().ok()? >= since).then(|| answer.trim().to_string())
        })
        .collect()
}

fn at_least(cluster: &Cluster, since: f64, count: usize) -> Vec<String> {
    wait_for(Duration::from_secs(30), &format!("{count} fetches of the cluster IP"), || {
        let seen = answers(cluster, since);
        (seen.len() >= count).then_some(seen)
    })
}

/// An HTTP GET from this (the node's) network namespace: the body.
fn fetch(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_or_else(|e| panic!("connecting to {addr} from the node: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(stream, "GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string()
}

#[test]
fn cluster_ips_reach_only_ready_pods_and_follow_them() {
    let mut cluster = Cluster::up("services");
    cluster.apply(&web());
    let pods = cluster.wait_ready("app=web,role!=spare", 3, Duration::from_secs(90));
    let ready: BTreeSet<String> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let service = cluster.get("service", "web");
    let vip = service["spec"]["clusterIP"].as_str().expect("the Service got a cluster IP").to_string();
    assert!(vip.starts_with("10.96."), "from the default service network: {vip}");

    // The Endpoints list the three ready pods, and the spare one apart.
    let endpoints: Value = wait_for(Duration::from_secs(10), "the Endpoints of web", || {
        let e: Value = serde_json::from_str(&cluster.try_run(&["get", "endpoints", "web", "-o", "json"]).ok()?).ok()?;
        let ready = e["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
        (ready == 3 && e["subsets"][0]["notReadyAddresses"].as_array().map_or(0, Vec::len) == 1).then_some(e)
    });
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], 8080, "the named target port resolved: {endpoints}");
    let listed = cluster.run_ok(&["get", "services"]);
    assert!(listed.contains(&vip) && listed.contains("80/TCP"), "{listed}");

    // The node's resolver answers the Service's name (and says which names do not exist).
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: resolver}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"cat /etc/resolv.conf; nslookup web.default.svc.cluster.local; nslookup nope.default.svc.cluster.local; echo body=$(timeout 2 wget -q -O - http://web/); exec sleep 3600\"]\n"
    ));
    let resolved = wait_for(Duration::from_secs(60), "the resolver pod's lookups", || {
        let logs = cluster.try_run(&["logs", "resolver"]).ok()?;
        logs.contains("body=").then_some(logs)
    });
    assert!(resolved.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolved}");
    assert!(resolved.contains(&format!("Address: {vip}")), "web.default.svc.cluster.local resolves to the cluster IP:\n{resolved}");
    assert!(resolved.contains("NXDOMAIN"), "an unknown Service name is NXDOMAIN:\n{resolved}");
    let body = resolved.lines().find_map(|l| l.strip_prefix("body=")).unwrap_or_default().trim().to_string();
    assert!(ready.contains(&body), "http://web/ (the search path) reaches a ready pod, got {body:?}:\n{resolved}");

    cluster.apply(&client(&vip));
    cluster.wait_ready("app=client", 1, Duration::from_secs(60));
    let start = uptime();
    let seen = at_least(&cluster, start, 40);
    let names: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(names, ready, "40 fetches reach each ready pod and nothing else (never the spare one): {seen:?}");

    // The node reaches the cluster IP, and the node port at its own address.
    let vip_addr: SocketAddr = format!("{vip}:80").parse().unwrap();
    assert!(ready.contains(&fetch(vip_addr)), "the node reaches the cluster IP");
    let node_port = cluster.get("service", "web-np")["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port");
    assert!((30000..=32767).contains(&node_port));
    assert!(ready.contains(&fetch(SocketAddr::from(([127, 0, 0, 1], node_port as u16)))), "the node port answers");

    // A deleted pod gets no new connection a second after its deletion.
    let gone = ready.iter().next().unwrap().clone();
    cluster.run_ok(&["delete", "pod", &gone]);
    let deleted = uptime();
    let after = at_least(&cluster, deleted + 1.0, 30);
    assert!(
        !after.contains(&gone) && !after.iter().any(|a| a == "fail"),
        "from a second after deleting {gone}, every fetch reaches another ready pod: {after:?}"
    );

    // ClientIP affinity: the client stays on one pod.
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  sessionAffinity: ClientIP\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    );
    assert_eq!(cluster.get("service", "web")["spec"]["clusterIP"], vip.as_str(), "re-applying keeps the cluster IP");
    let switched = uptime();
    let sticky = at_least(&cluster, switched + 1.0, 20);
    let sticky_names: BTreeSet<&String> = sticky.iter().collect();
    assert_eq!(sticky_names.len(), 1, "with ClientIP affinity every fetch reaches one pod: {sticky:?}");

    // Deleting the Service takes its address away.
    cluster.run_ok(&["delete", "service", "web"]);
    wait_for(Duration::from_secs(10), "the Endpoints to go with the Service", || cluster.try_run(&["get", "endpoints", "web"]).is_err().then_some(()));
}
