// Command kubelet is the upstream Kubernetes node agent, built from Go modules (same main as
// k8s.io/kubernetes/cmd/kubelet). tools/cluster runs it as the test cluster's only node,
// talking to containerd over CRI.
package main

import (
	"context"
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
