"""The traffic lab: IoT devices, a gateway and attackers in Linux network namespaces, producing labelled captures.

``iotids-lab run SCENARIO.yaml --out DIR`` (see :mod:`trafficlab.lab`); scenarios in :mod:`trafficlab.scenario`,
attack tools in :mod:`trafficlab.attacks`, flow labelling in :mod:`trafficlab.labels`.
"""
