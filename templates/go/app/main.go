// The enclave's program: replace with yours.
package main

import "fmt"

func main() {
	fmt.Println("hello from the enclave")
}
