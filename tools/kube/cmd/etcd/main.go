// Command etcd is a single-member etcd server for tests, embedded from
// go.etcd.io/etcd/server/v3/embed (Debian's etcd is too old for Kubernetes >= 1.31).
//
// Usage: etcd --data-dir DIR --listen-client-urls http://127.0.0.1:PORT
//
//	[--listen-peer-urls http://127.0.0.1:PORT] [--version]
//
// It serves until SIGINT/SIGTERM, then stops cleanly.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/embed"
)

func parseURLs(value string) []url.URL {
	u, err := url.Parse(value)
	if err != nil {
		log.Fatalf("etcd: bad URL %q: %v", value, err)
	}
	return []url.URL{*u}
}

func main() {
	dataDir := flag.String("data-dir", "default.etcd", "directory for the etcd data")
	clientURL := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL to listen on")
	peerURL := flag.String("listen-peer-urls", "http://127.0.0.1:0", "peer URL to listen on")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	quota := flag.Int64("quota-backend-bytes", 2<<30, "backend size limit")
	showVersion := flag.Bool("version", false, "print the etcd version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Printf("etcd Version: %s\n", version.Version)
		return
	}

	cfg := embed.NewConfig()
	cfg.Name = "storefleet-test"
	cfg.Dir = *dataDir
	cfg.LogLevel = *logLevel
	cfg.QuotaBackendBytes = *quota
	cfg.ListenClientUrls = parseURLs(*clientURL)
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	cfg.ListenPeerUrls = parseURLs(*peerURL)
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true // test data only: durability does not matter, speed does

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd %s ready on %s\n", version.Version, *clientURL)
	case <-time.After(60 * time.Second):
		server.Server.Stop()
		log.Fatal("etcd: server took too long to start")
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	case <-signals:
	}
}
