// The pod sandbox's one process (containerd's sandbox_image): it holds the pod's namespaces and waits for
// SIGTERM or SIGINT. Built here because no registry serves registry.k8s.io/pause to this machine.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
