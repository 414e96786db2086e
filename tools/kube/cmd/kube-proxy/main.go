// Command kube-proxy is the upstream Kubernetes service proxy, built from Go modules (same main
// as k8s.io/kubernetes/cmd/kube-proxy). tools/cluster runs it in iptables mode, and its
// `--cleanup` removes the rules it added when the test cluster goes down.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
