package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// Action result, as docs/actions.md describes it.
type value struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Secret   bool   `json:"secret,omitempty"`
	Copyable bool   `json:"copyable,omitempty"`
}

type result struct {
	Message string  `json:"message"`
	Values  []value `json:"values,omitempty"`
}

// resetPassword is the reset-password action: it reads {"length": N} on standard input,
// gives the database role "admin" (made on first use) a new random password of N
// letters and digits, and prints it as a secret value.
func resetPassword() int {
	var in struct {
		Length int `json:"length"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "reset-password: read the input:", err)
		return 2
	}
	if in.Length < 12 || in.Length > 64 { // the host checked it; a safeguard
		fmt.Fprintln(os.Stderr, "reset-password: length", in.Length, "is not between 12 and 64")
		return 2
	}
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	pw := make([]byte, in.Length)
	for i := range pw {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			fmt.Fprintln(os.Stderr, "reset-password:", err)
			return 1
		}
		pw[i] = alphabet[n.Int64()]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("postgres://postgres@/postgres?host=%s", env("PGSOCKET_DIR", "/run/postgresql"))
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reset-password: connect to the database:", err)
		return 1
	}
	defer c.Close(ctx)
	// The password holds only letters and digits, so quoting it is safe (ALTER ROLE takes
	// no parameters).
	for _, q := range []string{
		`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'admin') THEN CREATE ROLE admin LOGIN; END IF; END $$`,
		`ALTER ROLE admin PASSWORD '` + string(pw) + `'`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			fmt.Fprintln(os.Stderr, "reset-password:", err)
			return 1
		}
	}
	fmt.Fprintln(os.Stderr, "reset-password: the admin role has a new password")
	_ = json.NewEncoder(os.Stdout).Encode(result{
		Message: "The database role admin has a new password.",
		Values: []value{
			{Name: "user", Value: "admin", Copyable: true},
			{Name: "password", Value: string(pw), Secret: true, Copyable: true},
		},
	})
	return 0
}
