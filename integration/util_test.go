package integration

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func protojsonUnmarshal(b []byte, m proto.Message) error { return protojson.Unmarshal(b, m) }

func itoa32(i int32) string { return strconv.Itoa(int(i)) }

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
