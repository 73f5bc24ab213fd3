"""valkka tutorial 5, "Syncing server/client resources" (shared memory on demand): only the
import differs (and shorter naps; the shared memory's name carries the pid)."""
import os
import time, math
import logging
import numpy as np
from parafork.valkka import MessageProcess, MessageObject, \
    EventGroup, SyncIndex
from multiprocessing import shared_memory

class MyProcess(MessageProcess):

    def __init__(self, name):
        super().__init__(name)
        self.eg = EventGroup(10)

    def c__create(self, name: str = None,
            dtype: np.dtype = None,
            shape: tuple = None,
            sync_index: int = None):
        # create backend-side shared memory array "on-demand"
        n_bytes = len(np.array(1, dtype=dtype).tobytes())*math.prod(shape)
        self.shmem_name = name
        self.shmem__ = shared_memory.SharedMemory(
            name=self.shmem_name, create=False, size=n_bytes
        )
        self.array__ = np.ndarray(
            shape, dtype=dtype, buffer=self.shmem__.buf
        )
        self.eg.set(sync_index)

    def c__close(self, sync_index = None):
        self.shmem__.unlink()
        self.logger.info("c__close: client side shmem unlinked")
        self.eg.set(sync_index)

    def c__readWrite(self, sync_index: int =None):
        self.logger.info("c__readWrite: will change array values from %s to %s",
            self.array__[0,0], 3.0)
        self.array__[:,:] = 3.0
        self.logger.info("c__readWrite: ..did that!")
        self.eg.set(sync_index) # tell frontend that it's done

    def create(self, shape: tuple = (100, 100)):
        name = "my-shm-2-%d" % os.getpid()
        dtype = np.float16
        n_bytes = len(np.array(1, dtype=dtype).tobytes())*math.prod(shape)
        self.shmem = shared_memory.SharedMemory(
            name=name, create=True, size=n_bytes
        )
        self.array = np.ndarray(
            shape, dtype=dtype, buffer=self.shmem.buf
        )
        self.array[:,:] = 0.0
        # send data to backend so that it can create the client side shmem
        with SyncIndex(self.eg) as i:
            self.sendMessageToBack(MessageObject(
                "create",
                name = name,
                dtype = dtype,
                shape = shape,
                sync_index = i
            ))

    def getArray(self):
        return self.array

    def readWrite(self):
        with SyncIndex(self.eg) as i:
            self.sendMessageToBack(MessageObject(
                "readWrite",
                sync_index = i
            ))
        self.logger.info("readWrite: array values now %s", self.array[0,0])

    def close(self):
        with SyncIndex(self.eg) as i:
            self.sendMessageToBack(MessageObject(
                "close",
                sync_index = i
            ))
        self.logger.info("close: closing server side shmem")
        del self.array
        self.shmem.close()

p = MyProcess(name="my-process")
p.formatLogger()
p.start()
time.sleep(0.1)
p.create(shape=(200,200))
p.readWrite()
print("main: array values now", p.getArray()[0,0])
assert p.getArray()[0, 0] == 3.0
p.close()
time.sleep(0.1)
p.stop()
print("main: bye!")
