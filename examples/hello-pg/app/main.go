// Command app is hello-pg's application: it writes a row to Postgres and reads the rows
// back, over TCP on 127.0.0.1:5432 and over the Unix socket in the shared /run/postgresql,
// and reports on HTTP :8080 (/healthz once both work, /rows for the rows). Run as
// "server reset-password" it is the package's reset-password action (action.go).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

type report struct {
	Boot  string   `json:"boot"`
	TCP   string   `json:"tcp"`
	Unix  string   `json:"unix"`
	Rows  []string `json:"rows"`
	Error string   `json:"error,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "reset-password" {
		os.Exit(resetPassword())
	}
	tcpURL := env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
	sockDir := env("PGSOCKET_DIR", "/run/postgresql")
	unixURL := fmt.Sprintf("postgres://postgres@/postgres?host=%s", sockDir)
	boot := time.Now().UTC().Format(time.RFC3339Nano)

	var mu sync.Mutex
	rep := report{Boot: boot}
	go func() {
		for {
			r := run(tcpURL, unixURL, boot)
			mu.Lock()
			rep = r
			mu.Unlock()
			if r.Error == "" {
				log.Printf("wrote and read %d rows over tcp and unix", len(r.Rows))
				return
			}
			log.Printf("not yet: %s", r.Error)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if rep.TCP != "ok" || rep.Unix != "ok" {
			http.Error(w, rep.Error, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/rows", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(rep)
	})
	log.Printf("listening on :8080")
	log.Fatal(http.ListenAndServe(":8080", nil))
}

// run writes this boot's row over TCP, then reads every row over the Unix socket.
func run(tcpURL, unixURL, boot string) report {
	r := report{Boot: boot}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := pgx.Connect(ctx, tcpURL)
	if err != nil {
		r.Error = "tcp: " + err.Error()
		return r
	}
	defer tc.Close(ctx)
	if _, err := tc.Exec(ctx, `CREATE TABLE IF NOT EXISTS boots (at text PRIMARY KEY)`); err != nil {
		r.Error = "create: " + err.Error()
		return r
	}
	if _, err := tc.Exec(ctx, `INSERT INTO boots VALUES ($1) ON CONFLICT DO NOTHING`, boot); err != nil {
		r.Error = "insert: " + err.Error()
		return r
	}
	r.TCP = "ok"
	uc, err := pgx.Connect(ctx, unixURL)
	if err != nil {
		r.Error = "unix: " + err.Error()
		return r
	}
	defer uc.Close(ctx)
	rows, err := uc.Query(ctx, `SELECT at FROM boots ORDER BY at`)
	if err != nil {
		r.Error = "select: " + err.Error()
		return r
	}
	defer rows.Close()
	for rows.Next() {
		var at string
		if err := rows.Scan(&at); err != nil {
			r.Error = err.Error()
			return r
		}
		r.Rows = append(r.Rows, at)
	}
	r.Unix = "ok"
	return r
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
