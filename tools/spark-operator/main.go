// Command spark-operator is the kubeflow Spark operator (controller and webhook) built from its
// published Go module, for the local storefleet/spark-operator image (images/spark-operator).
// Build: CGO_ENABLED=0 go build -trimpath -o spark-operator .   (see tools/images/build.sh)
package main

import (
	"fmt"
	"os"

	"github.com/kubeflow/spark-operator/v2/cmd/operator"
)

func main() {
	if err := operator.NewCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
