// Package acme obtains and renews certificates from an ACME CA through lego: one account
// per directory URL kept in storage, HTTP-01, TLS-ALPN-01 and DNS-01 through the solvers
// it is given, renewal information (ARI) when the CA offers it.
package acme

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/go-acme/lego/v4/registration"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/store"
	"hearth.dev/services/certd/internal/x509pem"
)

// Account is an ACME account; it implements lego's registration.User.
type Account struct {
	Directory    string                 `json:"directory"`
	Email        string                 `json:"email,omitempty"`
	Registration *registration.Resource `json:"registration,omitempty"`
	key          crypto.Signer
}

// GetEmail implements registration.User.
func (a *Account) GetEmail() string { return a.Email }

// GetRegistration implements registration.User.
func (a *Account) GetRegistration() *registration.Resource { return a.Registration }

// GetPrivateKey implements registration.User.
func (a *Account) GetPrivateKey() crypto.PrivateKey { return a.key }

// AccountDir is where the account for a directory URL is stored: one account per
// directory.
func AccountDir(directory string) string {
	sum := sha256.Sum256([]byte(directory))
	return "acme/accounts/" + hex.EncodeToString(sum[:8])
}

// loadAccount returns the stored account for directory: with its key, and its
// registration unless a crash came between storing the key and registering. A missing
// account is made with a new key.
func loadAccount(st store.Storage, directory, email string) (*Account, error) {
	dir := AccountDir(directory)
	acct := &Account{Directory: directory, Email: email}
	kb, err := st.Load(dir + "/account.key")
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		key, err := x509pem.NewKey()
		if err != nil {
			return nil, err
		}
		kp, err := x509pem.EncodeKey(key)
		if err != nil {
			return nil, err
		}
		if err := st.Store(dir+"/account.key", kp); err != nil {
			return nil, err
		}
		acct.key = key
		return acct, nil
	case err != nil:
		return nil, err
	}
	if acct.key, err = x509pem.ParseKey(kb); err != nil {
		return nil, fmt.Errorf("%s/account.key: %w", dir, err)
	}
	var stored Account
	err = store.LoadJSON(st, dir+"/account.json", &stored)
	if errors.Is(err, errdefs.ErrNotFound) {
		return acct, nil
	}
	if err != nil {
		return nil, err
	}
	if stored.Directory != directory {
		return nil, fmt.Errorf("%s/account.json is for %s, not %s", dir, stored.Directory, directory)
	}
	acct.Email, acct.Registration = stored.Email, stored.Registration
	return acct, nil
}

func storeAccount(st store.Storage, a *Account) error {
	return store.StoreJSON(st, AccountDir(a.Directory)+"/account.json", a)
}
