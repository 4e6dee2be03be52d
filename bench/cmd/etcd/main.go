// Command etcd runs a one-member etcd on loopback for bench/run.sh, which
// compares gatehouse on file storage with gatehouse on etcd storage. It
// is the etcd server gatehouse's tests embed (go.etcd.io/etcd/server/v3),
// so the benchmark needs no etcd package on the machine.
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

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dir := flag.String("dir", "", "data directory (required)")
	client := flag.Int("client-port", 12379, "client port on 127.0.0.1")
	peer := flag.Int("peer-port", 12380, "peer port on 127.0.0.1")
	flag.Parse()
	if *dir == "" {
		log.Fatal("etcd: -dir is required")
	}
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = *dir
	cfg.LogLevel = "error"
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *client)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *peer)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		log.Fatal("etcd: not ready within 30s")
	}
	fmt.Println("ready", cu.String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-e.Err():
		log.Printf("etcd: %v", err)
	}
	e.Close()
}
