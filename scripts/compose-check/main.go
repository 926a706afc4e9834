// compose-check validates docker-compose.yml against the Compose
// Specification with compose-go, the loader `docker compose` itself uses,
// so the file can be checked on machines without a Docker engine or the
// compose plugin. It prints the services and exits non-zero on any error.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check docker-compose.yml [profile...]")
		os.Exit(2)
	}
	path, err := filepath.Abs(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithName("auditchain"),
		cli.WithProfiles(os.Args[2:]),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
		os.Exit(1)
	}
	names := project.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		svc := project.Services[name]
		if svc.Build != nil {
			df := filepath.Join(svc.Build.Context, svc.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				fmt.Fprintf(os.Stderr, "service %s: build file %s: %v\n", name, df, err)
				os.Exit(1)
			}
		}
		for _, v := range svc.Volumes {
			if v.Type == "bind" {
				if _, err := os.Stat(v.Source); err != nil {
					fmt.Fprintf(os.Stderr, "service %s: bind mount source %s: %v\n", name, v.Source, err)
					os.Exit(1)
				}
			}
		}
		fmt.Printf("service %-20s ok\n", name)
	}
}
