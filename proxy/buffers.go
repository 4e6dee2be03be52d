package proxy

import "sync"

// copyBufferSize is the size of the buffers ReverseProxy copies bodies
// through, the size it would allocate itself.
const copyBufferSize = 32 << 10

// bufferPool recycles the buffers ReverseProxy copies response bodies
// through, instead of allocating 32 KiB per request.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

// Get returns a buffer of copyBufferSize bytes.
func (bp *bufferPool) Get() []byte { return bp.pool.Get().(*[copyBufferSize]byte)[:] }

// Put recycles b if it came from Get.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) == copyBufferSize {
		bp.pool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}
