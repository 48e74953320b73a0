package store

import (
	"encoding/json"
	"fmt"
)

// StoreJSON stores v as indented JSON at key.
func StoreJSON(s Storage, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return s.Store(key, append(b, '\n'))
}

// LoadJSON decodes the JSON at key into v.
func LoadJSON(s Storage, key string, v any) error {
	b, err := s.Load(key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w (the file is damaged: restore it from a backup or remove it to start over)", key, err)
	}
	return nil
}
