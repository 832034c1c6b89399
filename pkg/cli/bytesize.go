package cli

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ByteSize is a flag value of a size in bytes, written as a Kubernetes
// quantity: 16Mi, 512Ki, 20M or a plain number.
type ByteSize int64

func (b *ByteSize) String() string {
	return resource.NewQuantity(int64(*b), resource.BinarySI).String()
}

// Set parses a quantity.
func (b *ByteSize) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a size such as 16Mi or 20M", s)
	}
	n, ok := q.AsInt64()
	if !ok || n <= 0 {
		return fmt.Errorf("%q: want a whole number of bytes above 0", s)
	}
	*b = ByteSize(n)
	return nil
}

// Type names the value in --help.
func (b *ByteSize) Type() string { return "size" }
