"""Fake of modules.infotext_utils: "Send to" bindings are recorded, as A1111 v1.10.1 does before
it connects them to the txt2img/img2img fields once every tab exists."""


class ParamBinding:
    def __init__(self, paste_button, tabname, source_text_component=None, source_image_component=None, source_tabname=None, override_settings_component=None, paste_field_names=None):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


registered_param_bindings = []


def register_paste_params_button(binding):
    registered_param_bindings.append(binding)
