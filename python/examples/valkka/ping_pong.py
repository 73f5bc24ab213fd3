"""valkka tutorial 3, "Send and receive message": only the import differs (and shorter naps)."""
import time
import logging
from parafork.valkka import MessageProcess, MessageObject
import select

class MyProcess(MessageProcess):

    def __init__(self, name):
        super().__init__(name)

    def c__ping(self, parameter=None):
        self.logger.info("c__ping: got parameter %s - will do some", parameter)
        time.sleep(0.2) # do something time consuming..
        self.logger.info("c__ping: ..did that!")
        self.send_out__(MessageObject(
            "pong", result="pudding"
        ))

    def ping(self, parameter=None):
        self.logger.info("ping: sending ping to backend")
        self.sendMessageToBack(MessageObject(
            "ping",
            parameter=parameter
        ))

p = MyProcess(name="my-process")
p.formatLogger()
pipe = p.getPipe()
p.start()
time.sleep(0.1)
p.ping(parameter="gotcha!")
print("main: waiting reply from multiprocessing backend")
select.select([pipe], [], [])
msg = pipe.recv()
print("main: got", msg(), "with some", msg["result"])
p.stop()
