"""valkka tutorial 2, "Send message and synchronize": only the import differs (and shorter naps)."""
import time
import logging
from parafork.valkka import MessageProcess, MessageObject, \
    EventGroup, SyncIndex

class MyProcess(MessageProcess):

    def __init__(self, name):
        super().__init__(name)
        self.eg = EventGroup(10)

    def c__ping(self, parameter=None, sync_index: int =None):
        self.logger.info("c__ping: got parameter %s - will do some", parameter)
        time.sleep(0.2) # do something time consuming..
        self.logger.info("c__ping: ..did that!")
        self.eg.set(sync_index) # tell frontend that it's done

    def ping(self, parameter=None):
        self.logger.info("ping: callin backend to do some stuff")
        with SyncIndex(self.eg) as i:
            self.sendMessageToBack(MessageObject(
                "ping",
                parameter=parameter,
                sync_index = i
            ))
        self.logger.info("ping: backend seems to be ready")

p = MyProcess(name="my-process")
p.formatLogger()
p.start()
time.sleep(0.1)
p.ping(parameter="gotcha!")
p.stop()
