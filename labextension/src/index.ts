import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  WidgetTracker,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';

import { ContainerDetail } from './detail';
import { SessionsModel } from './model';
import { ExecSessionsPanel } from './panel';
import { requestAPI } from './request';

/** Command ids of the extension. */
export const CommandIDs = {
  open: 'exec-sessions:open-panel',
  openContainer: 'exec-sessions:open-container',
  create: 'exec-sessions:create-container'
};

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161">
<path d="M3 4h18a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1zm1 2v12h16V6H4z"/>
<path d="M6.3 8.3 9 11l-2.7 2.7 1.4 1.4L11.8 11 7.7 6.9zM12 14h6v2h-6z"/>
</g></svg>`;

/** The panel's sidebar icon. */
export const execSessionsIcon = new LabIcon({
  name: 'jupyter-exec-sessions:icon',
  svgstr: ICON_SVG
});

/**
 * The Exec sessions plugin: a left-sidebar panel with the user's containers, live from the
 * events feed; a detail view per container (executions timeline, files, reuse history,
 * console / interrupt / delete); a command-palette entry.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-exec-sessions:plugin',
  description: 'Exec sessions: live containers, executions timeline, console on their kernels.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const settings = app.serviceManager.serverSettings;
    const model = new SessionsModel(settings);
    const tracker = new WidgetTracker<MainAreaWidget<ContainerDetail>>({
      namespace: 'exec-sessions-detail'
    });

    const openConsole = async (kernelId: string, name: string): Promise<void> => {
      await app.commands.execute('console:create', {
        // attach to the container's running kernel; never shut it down with the console
        kernelPreference: { id: kernelId, shutdownOnDispose: false },
        name: `Exec session ${name}`,
        activate: true
      });
    };

    const openContainer = (id: string): void => {
      const existing = tracker.find(w => w.content.containerId === id);
      if (existing && !existing.isDisposed) {
        app.shell.activateById(existing.id);
        return;
      }
      const content = new ContainerDetail(id, model, rendermime, { openConsole });
      const widget = new MainAreaWidget({ content });
      widget.id = `jes-tab-${id}`;
      widget.title.icon = execSessionsIcon;
      widget.title.closable = true;
      content.title.changed.connect(() => {
        widget.title.label = content.title.label;
      });
      widget.title.label = content.title.label;
      content.disposed.connect(() => widget.dispose());
      void tracker.add(widget);
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    };

    const create = async (): Promise<void> => {
      const answer = await InputDialog.getText({
        title: 'Create a container',
        label: 'Name',
        placeholder: 'my-container'
      });
      if (!answer.button.accept) {
        return;
      }
      const name = (answer.value ?? '').trim() || 'jupyterlab';
      try {
        const c = await requestAPI<any>('containers', settings, {
          method: 'POST',
          body: JSON.stringify({ name })
        });
        model.dispatch({ type: 'container', container: c });
      } catch (e) {
        void showErrorMessage('Exec sessions', (e as Error).message);
      }
    };

    const panel = new ExecSessionsPanel(model, { open: openContainer, create });
    panel.title.icon = execSessionsIcon;
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, 'jupyter-exec-sessions-panel');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Exec sessions: open panel',
      caption: 'Show the Exec sessions sidebar: live containers of this server',
      icon: execSessionsIcon,
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.openContainer, {
      label: 'Exec sessions: open container',
      execute: args => openContainer(String(args.id))
    });
    app.commands.addCommand(CommandIDs.create, {
      label: 'Exec sessions: create container',
      execute: () => create()
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.open, category: 'Exec sessions' });
      palette.addItem({ command: CommandIDs.create, category: 'Exec sessions' });
    }
    model.start();
  }
};

export default plugin;
