//go:build tools

// Package tools pins the kubeflow Spark operator module for the storefleet/spark-operator image
// (images/spark-operator/Dockerfile), which builds its command with
//
//	CGO_ENABLED=0 go build -o spark-operator github.com/kubeflow/spark-operator/v2/cmd/operator
//
// A main package cannot be imported, so this file imports its sub-commands: that keeps every
// dependency of the command in go.mod and go.sum. The replace block of go.mod copies the
// operator's own (replace directives of a dependency are ignored; without them the k8s.io
// modules resolve to versions the operator was not built with).
package tools

import (
	_ "github.com/kubeflow/spark-operator/v2/cmd/operator/controller"
	_ "github.com/kubeflow/spark-operator/v2/cmd/operator/version"
	_ "github.com/kubeflow/spark-operator/v2/cmd/operator/webhook"
)
